"""The perturbation methods' speed: Occlusion against Captum's, RISE against its floor.

    OMP_NUM_THREADS=1 python benchmarks/perturbation.py [--quick] [--device cpu|cuda]

On ResNet-18 with random weights, in one interleaved run (so that the ratios hold on a
noisy machine):

1. normgrad's ``Occlusion`` against Captum's ``Occlusion`` at equal settings (window,
   stride, baseline 0, the same number of images per model call), and against the floor
   of any occlusion: a plain loop of ``no_grad`` forward passes over as many inputs, in
   batches of the same size;
2. normgrad's ``RISE`` against the same floor (neither Captum nor pytorch-grad-cam has
   RISE): the cost per forward pass over the cost of the forward pass itself, i.e. what
   drawing the masks, masking and weighing add.

The maps are checked first (Occlusion equals Captum's). Results are printed and written
as JSON (with versions, commit and hardware) and Markdown under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision

import normgrad

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import environment
from harness import make_clocks, summary, sync

RESULTS = Path(__file__).resolve().parent / "results"


def _floor(model: torch.nn.Module, x: torch.Tensor, inputs: int, batch_size: int) -> Any:
    """``inputs`` forward passes of images like ``x``, ``batch_size`` per call, no graph:
    what any method that scores perturbed copies must spend."""
    chunk = x[:1].expand(batch_size, *x.shape[1:]).contiguous()

    def run() -> None:
        with torch.no_grad():
            for start in range(0, inputs, batch_size):
                model(chunk[: min(batch_size, inputs - start)])

    return run


def paired(fns: dict[str, Callable[[], Any]], device: torch.device, rounds: int) -> dict[str, Any]:
    """Each function timed once per round, in a fresh random order (``Timer``, device
    synchronised): the median and spread of each, and the median over rounds of each
    one's time over the last function's (the floor) in the same round, a ratio that holds
    on a shared machine where the times drift."""
    clocks = make_clocks(fns, device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    shuffle = random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            times[name].append(clocks[name]())
    floor = times[list(fns)[-1]]
    return {
        name: {
            **summary(values),
            "ratio_to_floor": statistics.median(v / f for v, f in zip(values, floor)),
        }
        for name, values in times.items()
    } | {"per_round_s": times}


def occlusion_case(
    model: torch.nn.Module, x: torch.Tensor, window: int, stride: int, batch_size: int, t: int
) -> dict[str, Any]:
    import captum.attr as ca

    n, channels, *spatial = x.shape
    target = torch.zeros(n, dtype=torch.long, device=x.device)
    ours = normgrad.Occlusion(model, window, stride, batch_size=batch_size)
    theirs = ca.Occlusion(model)
    per_eval = max(1, batch_size // n)  # Captum's copies of the batch per call

    def captum_call() -> torch.Tensor:
        return theirs.attribute(
            x,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            target=target,
            baselines=0.0,
            perturbations_per_eval=per_eval,
        )

    raw = ours.explain(x, target).raw
    assert raw is not None
    reference = captum_call()[:, :1]
    scale = float(reference.abs().max())
    difference = float((raw - reference).abs().max()) / scale
    positions = math.prod(-(-(s - window) // stride) + 1 for s in spatial)
    times = paired(
        {
            "normgrad Occlusion": lambda: ours(x, target),
            "Captum Occlusion": captum_call,
            "floor (forward loop)": _floor(model, x, n * (positions + 1), batch_size),
        },
        x.device,
        t,
    )
    per_round = times["per_round_s"]
    ratios = [a / b for a, b in zip(per_round["normgrad Occlusion"], per_round["Captum Occlusion"])]
    return {
        "images": n,
        "size": spatial,
        "window": window,
        "stride": stride,
        "batch_size": batch_size,
        "forward passes per image": positions + 1,
        "largest difference / largest value (vs Captum)": difference,
        "normgrad over Captum (median of rounds)": statistics.median(ratios),
        **times,
    }


def rise_case(
    model: torch.nn.Module, x: torch.Tensor, n_masks: int, cell: int, batch_size: int, t: int
) -> dict[str, Any]:
    n = x.shape[0]
    target = torch.zeros(n, dtype=torch.long, device=x.device)
    rise = normgrad.RISE(model, n_masks, cell, batch_size=batch_size)
    times = paired(
        {
            "normgrad RISE": lambda: rise(x, target),
            "floor (forward loop)": _floor(model, x, n * n_masks, batch_size),
        },
        x.device,
        t,
    )
    return {
        "images": n,
        "size": list(x.shape[2:]),
        "n_masks": n_masks,
        "cell_size": cell,
        "batch_size": batch_size,
        "forward passes per image": n_masks,
        **times,
    }


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"Perturbation methods on ResNet-18 (random weights), {env['device']}, "
        f"{env['torch_threads']} thread(s), torch {env['torch']}, Captum {env['captum']}.",
        "",
        "| case | method | median (s) | IQR (s) | time / floor (median of rounds) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, case in results["cases"].items():
        for method, value in case.items():
            if isinstance(value, dict) and "median_s" in value:
                lines.append(
                    f"| {name} | {method} | {value['median_s']:.3f} | {value['iqr_s']:.3f} "
                    f"| {value['ratio_to_floor']:.2f} |"
                )
    occlusion = results["cases"]["Occlusion"]
    ratio = occlusion["normgrad over Captum (median of rounds)"]
    lines += [
        "",
        f"Occlusion: normgrad takes {ratio:.2f}x Captum's time; the maps differ by "
        f"{occlusion['largest difference / largest value (vs Captum)']:.1e} of the largest "
        "value.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval().to(device)
    size = 64 if args.quick else 96
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    t = args.rounds if args.rounds is not None else (3 if args.quick else 11)
    sync(device)
    results = {
        "environment": environment(device),
        "cases": {
            "Occlusion": occlusion_case(model, x, 16, 8, 32, t),
            "RISE": rise_case(model, x, 64 if args.quick else 256, 16, 32, t),
        },
    }
    text = markdown(results)
    print(text)
    stem = f"perturbation-{device.type}" + ("-quick" if args.quick else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
