"""The class activation maps' speed: each gradient CAM against normgrad's Grad-CAM, Score-CAM
against pytorch-grad-cam's ScoreCAM.

    OMP_NUM_THREADS=1 python benchmarks/cams.py [--quick] [--device cpu|cuda]

On ResNet-18 with random weights, in one interleaved run per group (so that the ratios
hold on a noisy machine):

1. Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM and Eigen-CAM against Grad-CAM, each
   called alone on the same batch and layer (``layer4.1``): one forward and one backward
   pass each, so the ratio is what each method's maths adds (target: within 1.05x);
2. normgrad's ``ScoreCAM`` against pytorch-grad-cam's ``ScoreCAM`` at equal settings (the
   same layer, ``layer3.1`` with 256 channels, the same classes and 64 images per model
   call), and against the floor of a Score-CAM that runs every channel: a plain loop of
   ``no_grad`` forward passes over as many masked images, in batches of the same size
   (target: at most 1x pytorch-grad-cam's time). normgrad runs fewer: the channels
   constant in an image share one zero image; the report gives their share (random
   weights have few, trained ReLU networks more).

The maps' agreement is the tests' (``tests/test_cams.py``: Score-CAM equals
pytorch-grad-cam's with its masks upsampled as normgrad's; here its own
``align_corners=True`` upsampling is timed). Results are printed and written as JSON (with versions, commit and hardware) and Markdown under
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars
import torch
import torchvision

import normgrad
from normgrad import functional as nf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import environment
from harness import measure_group, sync

RESULTS = Path(__file__).resolve().parent / "results"
GRADIENT_CAMS = ("GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM", "EigenCAM")


MAPS = {
    "GradCAM": lambda a, g: nf.grad_cam_map(a, g),
    "GradCAMPlusPlus": nf.grad_cam_plus_plus_map,
    "XGradCAM": nf.xgrad_cam_map,
    "LayerCAM": nf.layer_cam_map,
    "HiResCAM": nf.hires_cam_map,
    "EigenCAM": lambda a, g: nf.eigen_cam_map(a),
}


def gradient_case(model: torch.nn.Module, x: torch.Tensor, t: float) -> dict[str, Any]:
    """Each explainer's call, interleaved; then each map's maths alone on the layer's
    activation and gradient (what the method adds to the shared pass)."""
    target = torch.arange(x.shape[0], device=x.device) % 2
    explainers = {name: getattr(normgrad, name)(model, "layer4.1") for name in GRADIENT_CAMS}
    calls = {name: (lambda e=e: e(x, target)) for name, e in explainers.items()}
    times = measure_group(calls, x.device, t, 40)
    # the layer's activation and gradient, as the shared pass hands them to the maths
    a = explainers["GradCAM"].explain(x, target).raw_layer_maps["layer4.1"]  # its shape
    gen = torch.Generator().manual_seed(1)
    activation = torch.rand(x.shape[0], 512, *a.shape[2:], generator=gen).to(x.device)
    gradient = torch.randn(activation.shape, generator=gen).to(x.device)
    maths = measure_group(
        {name: (lambda f=f: f(activation, gradient)) for name, f in MAPS.items()},
        x.device,
        t / 10,
        40,
    )
    return {
        "images": x.shape[0],
        "size": list(x.shape[2:]),
        "layer": "layer4.1",
        **times,
        "maths alone": maths,
    }


def _floor(model: torch.nn.Module, x: torch.Tensor, inputs: int, batch_size: int) -> Any:
    """``inputs`` forward passes of images like ``x``, ``batch_size`` per call, no graph."""
    chunk = x[:1].expand(batch_size, *x.shape[1:]).contiguous()

    def run() -> None:
        with torch.no_grad():
            for start in range(0, inputs, batch_size):
                model(chunk[: min(batch_size, inputs - start)])

    return run


def score_case(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int,
    t: float,
    rounds: int,
    clock: str = "wall",
) -> dict[str, Any]:
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = "layer3.1"
    channels = model.get_submodule(layer).conv2.out_channels
    classes = [i % 2 for i in range(x.shape[0])]
    ours = normgrad.ScoreCAM(model, layer, batch_size=batch_size)
    copied = copy.deepcopy(model)
    theirs = ScoreCAM(copied, [copied.get_submodule(layer)])
    theirs.batch_size = batch_size
    targets = [ClassifierOutputTarget(c) for c in classes]
    target = torch.tensor(classes, device=x.device)

    def their_call() -> Any:
        return theirs(input_tensor=x, targets=targets)

    times = measure_group(
        {
            "normgrad ScoreCAM": lambda: ours(x, target),
            "pytorch-grad-cam ScoreCAM": their_call,
            "floor (forward loop)": _floor(model, x, x.shape[0] * channels, batch_size),
        },
        x.device,
        t,
        rounds,
        clock,
    )
    theirs.activations_and_grads.release()
    return {
        "images": x.shape[0],
        "size": list(x.shape[2:]),
        "layer": layer,
        "batch_size": batch_size,
        "forward passes per image": channels + 1,
        "constant pairs": _constant_share(model, layer, x),
        "clock": clock,
        **times,
    }


def _constant_share(model: torch.nn.Module, layer: str, x: torch.Tensor) -> float:
    """The share of (image, channel) pairs of ``layer`` constant in their image: the pairs
    normgrad's Score-CAM scores with one zero image instead of running them."""
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    a = seen[0]
    return float(nf.is_constant(a.flatten(0, 1)).float().mean())


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    grad = results["cases"]["gradient CAMs"]
    score = results["cases"]["Score-CAM"]
    lines = [
        f"Class activation maps on ResNet-18 (random weights), {env['device']}, "
        f"{env['torch_threads']} thread(s), torch {env['torch']}, pytorch-grad-cam "
        f"{env.get('pytorch_grad_cam', 'absent')}.",
        "",
        f"Gradient CAMs, {grad['images']} images of {grad['size']} px, `{grad['layer']}`:",
        "",
        "| method | median (s) | IQR (s) | against Grad-CAM | its maths alone (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    base = grad["GradCAM"]["median_s"]
    for name in GRADIENT_CAMS:
        value, maths = grad[name], grad["maths alone"][name]["median_s"]
        lines.append(
            f"| {name} | {value['median_s']:.4f} | {value['iqr_s']:.4f} "
            f"| {value['median_s'] / base:.3f}x | {1e3 * maths:.3f} |"
        )
    lines += [
        "",
        f"Score-CAM, {score['images']} images of {score['size']} px, `{score['layer']}` "
        f"({score['forward passes per image']} forward passes per image for every channel "
        f"run; {100 * score['constant pairs']:.1f}% of the (image, channel) pairs constant, "
        "which normgrad scores with one zero image), "
        f"{score['batch_size']} images per model call, {score['clock']}-clock time:",
        "",
        "| method | median (s) | IQR (s) | against pytorch-grad-cam | against the floor |",
        "| --- | --- | --- | --- | --- |",
    ]
    theirs = score["pytorch-grad-cam ScoreCAM"]["median_s"]
    floor = score["floor (forward loop)"]["median_s"]
    for name in ("normgrad ScoreCAM", "pytorch-grad-cam ScoreCAM", "floor (forward loop)"):
        value = score[name]
        lines.append(
            f"| {name} | {value['median_s']:.3f} | {value['iqr_s']:.3f} "
            f"| {value['median_s'] / theirs:.2f}x | {value['median_s'] / floor:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=None)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="Score-CAM timed by wall clock or by process CPU time (cpu: on a shared "
        "machine, with one thread)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval().to(device)
    gen = torch.Generator().manual_seed(0)
    size = 64 if args.quick else 112
    x = torch.randn(4, 3, size, size, generator=gen).to(device)
    small = torch.randn(2, 3, 40, 40, generator=gen).to(device)
    t = args.min_run_time if args.min_run_time is not None else (0.5 if args.quick else 2.0)
    sync(device)
    results = {
        "environment": environment(device),
        "cases": {
            "gradient CAMs": gradient_case(model, x, t),
            "Score-CAM": score_case(model, small, 64, t, 5 if args.quick else 21, args.clock),
        },
    }
    text = markdown(results)
    print(text)
    stem = f"cams-{device.type}" + ("-quick" if args.quick else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
