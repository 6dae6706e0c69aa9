"""Several classes at once: one call with a target (N, K) against K separate calls.

Run by hand, on an otherwise idle machine::

    OMP_NUM_THREADS=1 python benchmarks/multilabel.py            # CPU, reduced size
    python benchmarks/multilabel.py --size 224 --batch 8 --device cuda

For each method, the two ways are timed interleaved (``harness.measure_group``: every
round calls each once, in a fresh order) on a ResNet-50 with random weights; the ratio
is the median time of the one call over the median time of the K calls. Results go to
``benchmarks/results/multilabel-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import warnings
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=5.0)
    parser.add_argument("--min-rounds", type=int, default=5)
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
    for name, explainer in methods(model).items():

        def together(e: normgrad.Explainer = explainer) -> object:
            return e.explain(x, target)

        def separately(e: normgrad.Explainer = explainer) -> object:
            return [e.explain(x, target[:, j]) for j in range(k)]

        timed = measure_group(
            {"one call": together, "separate calls": separately},
            device,
            args.min_run_time,
            args.min_rounds,
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
        **environment(device),
    }
    stem = RESULTS / f"multilabel-{device.type}"
    stem.with_suffix(".json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))
    lines = [
        f"ResNet-50, {args.batch} images of {args.size}x{args.size}, K = {k} classes per "
        f"image, {device.type}, {setup['threads']} thread(s); medians over interleaved rounds.",
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
