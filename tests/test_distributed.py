"""Evaluation over 2 and 3 gloo processes on localhost equals one process over all the data."""

from __future__ import annotations

import dataclasses
import math
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

import normgrad

from . import distributed_worker as worker

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)

TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(world: int, scenarios: list[str], tmp: Path) -> list[dict[str, Any]]:
    """Run ``scenarios`` on ``world`` processes; a hang fails the test after TIMEOUT_S."""
    context = mp.start_processes(
        worker.main,
        args=(world, _free_port(), str(tmp), scenarios),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail(f"the {world} processes did not finish within {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    results = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for r, result in enumerate(results):
        assert "crash" not in result, f"rank {r}: {result.get('crash')}"
    return results


def _canon(value: Any) -> Any:
    """``value`` with NaN made comparable (NaN != NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canon(dataclasses.astuple(value))
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    return bool(_canon(a) == _canon(b))


def _single_process(with_ids: bool = False) -> normgrad.EvaluationResult:
    data = worker.Radiographs(with_ids)
    loader = DataLoader(data, batch_size=2, collate_fn=worker.collate)
    return worker.run(worker.model(), loader)


def _one_game() -> tuple[int, int, int]:
    m = worker.model()
    game = normgrad.metrics.PointingGame(tolerance=3)
    loader = DataLoader(worker.Radiographs(), batch_size=3, collate_fn=worker.collate)
    for x, labels, boxes in loader:
        game.update(normgrad.NormGrad(m, "relu3")(x, labels), boxes)
    return game.hits, game.total, game.skipped


def test_two_processes_equal_one(tmp_path: Path) -> None:
    results = _spawn(2, list(worker.SCENARIOS), tmp_path)
    whole = _single_process()
    by_id = _single_process(with_ids=True)
    assert whole.records[0].image == "0" and by_id.records[0].image == "image-0"
    for rank, result in enumerate(results):
        status, (rows, records) = result["evaluate"]
        assert status == "ok"
        assert _same(rows, whole.rows) and _same(records, whole.records), rank
        assert len({r.image for r in records}) == worker.IMAGES
        status, (rows, records) = result["with ids"]
        assert _same(rows, by_id.rows) and _same(records, by_id.records), rank
        assert result["pointing game"] == ("ok", _one_game())
        # every rank fails with a clear error, none waits for another
        kind, name, message = result["tolerance differs"]
        assert (kind, name) == ("error", "InvalidArgumentError")
        assert "other tolerance" in message and "same explainers and arguments" in message
        kind, name, message = result["deletion options differ"]
        assert (kind, name) == ("error", "InvalidArgumentError")
        assert "other deletion_options than" in message  # a tensor baseline, by its bytes
        kind, name, message = result["explainers differ"]
        assert name == "InvalidArgumentError" and "other explainers" in message
        kind, name, message = result["seeds differ"]
        assert name == "InvalidArgumentError", message
        assert f"explainers['SmoothGrad'].seed ({rank} here, {1 - rank} in rank" in message
        kind, name, message = result["weights differ"]
        assert name == "InvalidArgumentError" and "other model weights (conv3.weight)" in message
        kind, name, message = result["bad argument on one rank"]
        assert "confidence" in message
        assert name == ("InvalidArgumentError" if rank == 1 else "DistributedEvaluationError")
        kind, name, message = result["rank fails"]
        assert "disk read failed" in message
        assert name == ("RuntimeError" if rank == 1 else "DistributedEvaluationError")
        kind, name, message = result["distributed sampler"]
        assert name == "InvalidArgumentError" and "image-0 given more than once" in message
        assert "ShardSampler" in message
        kind, name, message = result["no ids"]
        assert name in ("InvalidArgumentError", "DistributedEvaluationError")
        assert "needs an id" in message


def test_a_failing_rank_stops_every_rank_promptly(tmp_path: Path) -> None:
    """A rank that fails opening its records file or its data, or on a batch, makes every
    rank raise its cause within seconds (not gloo's timeout), as does a rank interrupted in
    its data that catches the interrupt and lives on; a rank that leaves an evaluate without
    the others (interrupted between two exchanges) and starts the next one is told apart,
    not paired with the others' earlier call."""
    results = _spawn(2, list(worker.FAILURES), tmp_path)
    whole = _single_process()
    for rank, result in enumerate(results):
        for scenario, kind, cause in [
            ("stale records on one rank", "InvalidArgumentError", "records: "),
            ("data fails to open", "FileNotFoundError", "shard-1.tar is missing"),
            ("bad labels on one rank", "ArgumentTypeError", "data: the labels of batch 1"),
        ]:
            status, (name, message, seconds, passes) = result[scenario]
            assert status == "ok" and seconds < 45, (rank, scenario, seconds)  # gloo: 60 s
            assert cause in message, (rank, scenario, message)
            if rank == 1:
                assert name == kind, (scenario, message)
            else:
                assert name == "DistributedEvaluationError", (scenario, message)
                assert f"rank 1 failed, so rank 0 stops too: {kind}: " in message, message
            if scenario != "bad labels on one rank":
                assert passes == 0, (rank, scenario)  # failed before any rank's data
        # an interrupt caught by the interrupted rank reaches the other one at once
        status, (name, message, seconds, passes) = result["interrupted in its data"]
        assert status == "ok" and seconds < 45, (rank, seconds)
        if rank == 0:
            assert name == "DistributedEvaluationError", message
            assert "rank 1 failed, so rank 0 stops too: KeyboardInterrupt" in message, message
        else:
            assert (name, message) == ("RuntimeError", "KeyboardInterrupt caught")
        status, (name, message, seconds, passes) = result["calls cross"]
        assert status == "ok" and seconds < 45, (rank, seconds)
        assert name == "DistributedEvaluationError", message
        assert "no longer pair up" in message, message
        assert f"rank {1 - rank} is at call" in message and f"rank {rank} at call" in message
        status, (rows, records) = result["restarted"]
        assert status == "ok" and _same(rows, whole.rows) and _same(records, whole.records)


def test_three_processes_equal_one(tmp_path: Path) -> None:
    results = _spawn(3, ["evaluate", "pointing game"], tmp_path)
    whole = _single_process()
    for result in results:
        assert _same(result["evaluate"], ("ok", (whole.rows, whole.records)))
        assert result["pointing game"] == ("ok", _one_game())


def test_shard_sampler_holds_every_index_once() -> None:
    for length in range(0, 12):
        for world in range(1, 5):
            shards = [list(normgrad.ShardSampler(length, world, r)) for r in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(length))
            assert [len(normgrad.ShardSampler(length, world, r)) for r in range(world)] == [
                len(s) for s in shards
            ]
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert list(normgrad.ShardSampler(range(5))) == list(range(5))  # no group: everything
    with pytest.raises(normgrad.InvalidArgumentError, match="rank"):
        normgrad.ShardSampler(5, 2, 2)
    with pytest.raises(normgrad.ArgumentTypeError, match="data"):
        normgrad.ShardSampler("five")  # type: ignore[arg-type]
