"""What each process of the distributed tests runs (imported by spawned processes)."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import normgrad
from normgrad._evaluation.records import RecordFile

from .models import TinyCNN, seeded

SIZE = 16
IMAGES = 7  # not a multiple of 2 or 3: the shards differ in length


class Radiographs(Dataset[Any]):
    """Seven float64 images with zero, one or two boxes each."""

    def __init__(self, with_ids: bool = False) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(IMAGES, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        self.boxes = []
        for i in range(IMAGES):
            corners = torch.randint(0, SIZE - 4, (i % 3, 2), generator=gen)
            self.boxes.append(torch.cat([corners, corners + 3], dim=1))
        self.with_ids = with_ids

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        item = (self.images[i], torch.tensor(i % 4), self.boxes[i])
        return (*item, f"image-{i}") if self.with_ids else item


def collate(samples: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    columns = list(zip(*samples))
    out = [torch.stack(columns[0]), torch.stack(columns[1]), list(columns[2])]
    return tuple([*out, list(columns[3])] if len(columns) == 4 else out)


def model() -> torch.nn.Module:
    return seeded(TinyCNN()).double()


def explainers(m: torch.nn.Module) -> dict[str, normgrad.Explainer]:
    return {
        "NormGrad multi": normgrad.NormGrad(m, ["conv2", "relu3"], "conv3x3"),
        "Grad-CAM": normgrad.GradCAM(m, "relu3"),
        "Guided Backprop": normgrad.GuidedBackprop(m),
    }


def run(m: torch.nn.Module, data: Any, **kwargs: Any) -> normgrad.EvaluationResult:
    kwargs = {"tolerance": 3, "smoothing_sigma": 1.0, "progress": False, **kwargs}
    kwargs.setdefault("metrics", ("energy", "multi", "froc"))
    return normgrad.evaluate(m, explainers(m), data, **kwargs)


def _sharded(rank: int, world: int, with_ids: bool = False) -> DataLoader[Any]:
    data = Radiographs(with_ids)
    sampler = normgrad.ShardSampler(data, world, rank)
    return DataLoader(data, batch_size=2, sampler=sampler, collate_fn=collate)


class Failing:
    """A rank's data that fails at its second batch."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __iter__(self) -> Any:
        for step, batch in enumerate(self.data):
            if step == 1:
                raise RuntimeError("disk read failed")
            yield batch


def _evaluate(rank: int, world: int) -> Any:
    result = run(model(), _sharded(rank, world))
    return result.rows, result.records


def _with_ids(rank: int, world: int) -> Any:
    result = run(model(), _sharded(rank, world, with_ids=True))
    return result.rows, result.records


def _tolerance_differs(rank: int, world: int) -> Any:
    return run(model(), _sharded(rank, world), tolerance=3 + rank)


def _deletion_options_differ(rank: int, world: int) -> Any:
    baseline = torch.full((1, 3, 1, 1), float(rank), dtype=torch.float64)  # one value per rank
    options = {"steps": 4, "baseline": baseline}
    return run(model(), _sharded(rank, world), metrics=("deletion",), deletion_options=options)


def _explainers_differ(rank: int, world: int) -> Any:
    m = model()
    chosen = explainers(m)
    if rank == 1:
        chosen["Gradient"] = normgrad.Gradient(m)
    return normgrad.evaluate(m, chosen, _sharded(rank, world), progress=False)


def _seeds_differ(rank: int, world: int) -> Any:
    m = model()
    chosen = {"SmoothGrad": normgrad.SmoothGrad(normgrad.Gradient(m), n_samples=2, seed=rank)}
    return normgrad.evaluate(m, chosen, _sharded(rank, world), progress=False)


def _weights_differ(rank: int, world: int) -> Any:
    m = model()
    with torch.no_grad():
        m.conv3.weight[0, 0, 0, 0] += rank * 1e-9
    return run(m, _sharded(rank, world))


def _bad_argument_on_one_rank(rank: int, world: int) -> Any:
    return run(model(), _sharded(rank, world), confidence=0.95 if rank == 0 else 1.5)


def _rank_fails(rank: int, world: int) -> Any:
    data = _sharded(rank, world, with_ids=True)
    return run(model(), Failing(data) if rank == 1 else data)


def _timed(rank: int, call: Callable[[torch.nn.Module], Any]) -> Any:
    """``call(model)``: what it raised, how long it took and the forward passes it ran."""
    m = model()
    passes: list[int] = []
    handle = m.register_forward_pre_hook(lambda module, args: passes.append(1))
    start = time.monotonic()
    try:
        call(m)
        outcome: tuple[str, str] = ("returned", "")
    except Exception as error:
        outcome = (type(error).__name__, str(error))
    finally:
        handle.remove()
    return (*outcome, time.monotonic() - start, len(passes))


def _stale_records_on_one_rank(rank: int, world: int) -> Any:
    """Rank 1's records file was written with another tolerance: it fails opening it."""
    path = Path(os.environ["NORMGRAD_TEST_DIR"]) / "stale.csv"
    if rank == 1:  # a file of other settings, where rank 1 keeps its records
        RecordFile(path.with_name(f"stale.rank1-of-{world}.csv"), {"tolerance": 5.0}, [])
    dist.barrier()
    return _timed(rank, lambda m: run(m, _sharded(rank, world), records=path))


class _Unopenable:
    """Data whose iterator cannot be made (a shard file that is missing)."""

    def __iter__(self) -> Any:
        raise FileNotFoundError("shard-1.tar is missing")


def _data_fails_to_open(rank: int, world: int) -> Any:
    return _timed(rank, lambda m: run(m, _Unopenable() if rank == 1 else _sharded(rank, world)))


class _FloatLabels:
    """A rank's data whose first batch has float labels."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __iter__(self) -> Any:
        for x, labels, boxes, ids in self.data:
            yield x, labels.double(), boxes, ids


def _bad_labels_on_one_rank(rank: int, world: int) -> Any:
    data = _sharded(rank, world, with_ids=True)
    return _timed(rank, lambda m: run(m, _FloatLabels(data) if rank == 1 else data))


class _InterruptedAt:
    """A rank's data that stops with a KeyboardInterrupt at its second batch."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __iter__(self) -> Any:
        for step, batch in enumerate(self.data):
            if step == 1:
                raise KeyboardInterrupt
            yield batch


def _interrupted_in_its_data(rank: int, world: int) -> Any:
    """Rank 1 is interrupted in its data loop and catches it (a notebook), staying alive and
    calling nothing more for a while: rank 0 must raise its cause at once, not wait in the
    final gather for gloo's timeout."""
    data = _sharded(rank, world, with_ids=True)

    def call(m: torch.nn.Module) -> Any:
        try:
            run(m, _InterruptedAt(data) if rank == 1 else data)
        except KeyboardInterrupt:
            time.sleep(5)  # alive, in no collective
            raise RuntimeError("KeyboardInterrupt caught") from None

    return _timed(rank, call)


def _calls_cross(rank: int, world: int) -> Any:
    """Rank 1 is interrupted out of an evaluate right after its settings exchange (outside
    any step that could tell the others), catches it and starts the next one while rank 0
    waits at the first one's next exchange: the two calls must not pair up."""
    from normgrad._evaluation import runner

    real = runner.exchange
    interrupted: list[bool] = []

    def exchange(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if rank == 1 and args[2] == "settings" and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return out

    def calls(m: torch.nn.Module) -> Any:
        runner.exchange = exchange  # type: ignore[assignment]
        try:
            run(m, _sharded(rank, world))
        except KeyboardInterrupt:
            run(m, _sharded(rank, world))
        finally:
            runner.exchange = real  # type: ignore[assignment]

    return _timed(rank, calls)


def _restarted(rank: int, world: int) -> Any:
    """After the calls crossed, a new process group: evaluate pairs up again."""
    dist.destroy_process_group()
    init = Path(os.environ["NORMGRAD_TEST_DIR"]) / "restart"
    dist.init_process_group(
        "gloo", init_method=f"file://{init}", rank=rank, world_size=world,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    result = run(model(), _sharded(rank, world))
    return result.rows, result.records


def _distributed_sampler(rank: int, world: int) -> Any:
    data = Radiographs(with_ids=True)
    sampler = DistributedSampler(data, world, rank, shuffle=False)  # pads with repeats
    return run(model(), DataLoader(data, batch_size=2, sampler=sampler, collate_fn=collate))


def _no_ids(rank: int, world: int) -> Any:
    data = Radiographs()
    sampler = DistributedSampler(data, world, rank, shuffle=False)
    return run(model(), DataLoader(data, batch_size=2, sampler=sampler, collate_fn=collate))


def _pointing_game(rank: int, world: int) -> Any:
    m = model()
    game = normgrad.metrics.PointingGame(tolerance=3)
    for x, labels, boxes in _sharded(rank, world):
        game.update(normgrad.NormGrad(m, "relu3")(x, labels), boxes)
    game.all_reduce()
    return game.hits, game.total, game.skipped


SCENARIOS: dict[str, Callable[[int, int], Any]] = {
    "evaluate": _evaluate,
    "with ids": _with_ids,
    "tolerance differs": _tolerance_differs,
    "deletion options differ": _deletion_options_differ,
    "explainers differ": _explainers_differ,
    "seeds differ": _seeds_differ,
    "weights differ": _weights_differ,
    "bad argument on one rank": _bad_argument_on_one_rank,
    "rank fails": _rank_fails,
    "distributed sampler": _distributed_sampler,
    "no ids": _no_ids,
    "pointing game": _pointing_game,
}

FAILURES: dict[str, Callable[[int, int], Any]] = {
    "stale records on one rank": _stale_records_on_one_rank,
    "data fails to open": _data_fails_to_open,
    "bad labels on one rank": _bad_labels_on_one_rank,
    "interrupted in its data": _interrupted_in_its_data,
    "calls cross": _calls_cross,  # the ranks' calls no longer pair up after it
    "restarted": _restarted,  # until the process group is started again
}


def main(rank: int, world: int, port: int, out: str, scenarios: list[str]) -> None:
    """One process: join the gloo group on localhost, run the scenarios, save what each
    returned or raised."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    os.environ["NORMGRAD_TEST_DIR"] = out
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    results: dict[str, Any] = {}
    try:
        for name in scenarios:
            try:
                results[name] = ("ok", {**SCENARIOS, **FAILURES}[name](rank, world))
            except Exception as error:
                results[name] = ("error", type(error).__name__, str(error))
    except BaseException:
        results["crash"] = traceback.format_exc()
    finally:
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: gloo's worker threads can still be alive
    # while it runs, and a thread destroyed then aborts the process (SIGABRT, "terminate
    # called without an active exception") after every result has been saved.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
