"""Several classes at once: one call with a target (N, K) against K separate calls.

Run by hand, on an otherwise idle machine::

    python benchmarks/multilabel.py --size 224 --batch 8          # CPU: 10 minutes on 2 cores
    python benchmarks/multilabel.py --size 224 --batch 8 --device cuda
    OMP_NUM_THREADS=1 python benchmarks/multilabel.py --clock cpu # reduced size, shared machine

For each method, the two ways are timed interleaved (``harness.measure_group``: every
round calls each once, in a fresh order) on a ResNet-50 with random weights; the ratio
is the median time of the one call over the median time of the K calls. The last two
rows time the same two ways without any map (``floor_calls``), the classes' backward
passes batched or one by one: the bound for methods whose backward reaches the input. Results go to
``benchmarks/results/multilabel-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from cases import environment
from harness import measure_group

import normgrad

RESULTS = Path(__file__).resolve().parent / "results"


def methods(model: torch.nn.Module) -> dict[str, normgrad.Explainer]:
    layers = normgrad.presets.layers("resnet50")
    return {
        "NormGrad (multi-layer)": normgrad.NormGrad(model, layers.multi, "conv1x1"),
        "Grad-CAM": normgrad.GradCAM(model, "layer4.2"),
        "Gradient": normgrad.Gradient(model),
        "Guided Grad-CAM": normgrad.GuidedGradCAM(model, "layer4.2"),
    }


FLOORS = {
    "floor: batched backward to the input": True,
    "floor: backward to the input, class by class": False,
}


def floor_calls(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, batched: bool
) -> dict[str, Callable[[], object]]:
    """The two ways without any map: one forward pass and the ``K`` classes' gradients with
    respect to the input (by one batched backward, or one backward per class), against
    ``K`` forward and backward passes. The bound for any method whose backward reaches the
    input (Gradient, Guided Grad-CAM); which of the two is faster on a device decides
    normgrad's ``batches_backward`` there."""
    k = target.shape[1]
    seeds = torch.eye(k, device=x.device).unsqueeze(1).expand(k, *target.shape)

    def together() -> object:
        leaf = x.detach().requires_grad_()
        scores = model(leaf).gather(1, target)
        if batched:
            return torch.autograd.grad([scores], [leaf], [seeds], is_grads_batched=True)
        return [
            torch.autograd.grad(scores[:, j].sum(), leaf, retain_graph=j < k - 1) for j in range(k)
        ]

    def separately() -> object:
        grads = []
        for j in range(k):
            leaf = x.detach().requires_grad_()
            score = model(leaf).gather(1, target[:, j : j + 1]).sum()
            grads.append(torch.autograd.grad(score, leaf))
        return grads

    return {"one call": together, "separate calls": separately}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=5.0)
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall clock, or process CPU time (cpu: on a shared machine, 1 thread)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    # random weights: deep maps constant for some classes, said once per call otherwise
    warnings.filterwarnings("ignore", message="layer .* gives a constant map")
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=14).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    k = args.classes
    target = torch.stack([torch.randperm(14)[:k] for _ in range(args.batch)]).to(device)
    rows = []
    groups: dict[str, dict[str, Callable[[], object]]] = {}
    for name, explainer in methods(model).items():

        def together(e: normgrad.Explainer = explainer) -> object:
            return e.explain(x, target)

        def separately(e: normgrad.Explainer = explainer) -> object:
            return [e.explain(x, target[:, j]) for j in range(k)]

        groups[name] = {"one call": together, "separate calls": separately}
    for name, batched in FLOORS.items():
        groups[name] = floor_calls(model, x, target, batched)
    for name, calls in groups.items():
        timed = measure_group(
            calls,
            device,
            args.min_run_time,
            args.min_rounds,
            args.clock,
        )
        one, each = timed["one call"], timed["separate calls"]
        ratio = one["median_s"] / each["median_s"]
        rows.append({"method": name, "one": one, "separate": each, "ratio": ratio})
        print(f"{name}: {one['median_s']:.3f} s vs {each['median_s']:.3f} s, ratio {ratio:.2f}")
    setup = {
        "model": "resnet50 (random weights)",
        "size": args.size,
        "batch": args.batch,
        "classes": k,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        **environment(device),
    }
    stem = RESULTS / f"multilabel-{device.type}"
    stem.with_suffix(".json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))
    lines = [
        f"ResNet-50, {args.batch} images of {args.size}x{args.size}, K = {k} classes per "
        f"image, {device.type}, {setup['threads']} thread(s), {args.clock}-clock time; medians "
        "over interleaved rounds.",
        "",
        "| method | one call, target (N, K) | K separate calls | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['one']['median_s']:.3f} s | "
            f"{r['separate']['median_s']:.3f} s | {r['ratio']:.2f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
