"""Quick start: NormGrad on a torchvision ResNet-18 with random weights.

Runs the six NormGrad variants of the paper (scaling, conv1x1, conv3x3; single layer and
multi-layer) on a synthetic grey image with a bright foreign object, prints where each map
points, and saves the maps side by side as ``outputs/quickstart.png``.

    python examples/quickstart.py [--out outputs] [--size 224]

The weights are random (nothing is downloaded), so the maps show the mechanics, not a
trained model's reasoning; see the docs for loading real weights.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torchvision

import normgrad
from normgrad import metrics

SINGLE = "layer4.1"
MULTI = ["layer2.0", "layer3.0", "layer4.0", "layer4.1"]


def synthetic_radiograph(
    size: int, seed: int = 0
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """A grey image (1, 3, size, size) with a smooth body, noise and a bright disc; and its box."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    body = torch.exp(-(xs**2 / 0.5 + ys**2 / 0.8))
    image = 0.6 * body + 0.05 * torch.randn(size, size, generator=gen)
    cy, cx, r = int(size * 0.35), int(size * 0.68), max(2, size // 20)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 1.5
    box = (cx - r, cy - r, cx + r, cy + r)
    return image.expand(1, 3, size, size).clone(), box


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    x, box = synthetic_radiograph(args.size)
    print(f"normgrad {normgrad.__version__}: ResNet-18 (random weights), input {tuple(x.shape)}")
    print(f"foreign object box (xmin, ymin, xmax, ymax) = {box}\n")

    maps: dict[str, torch.Tensor] = {}
    print(f"{'method':<22}{'max at (x, y)':>16}{'mean':>8}{'time (ms)':>11}")
    for vil in ("scaling", "conv1x1", "conv3x3"):
        for label, layers in (("", SINGLE), (" (M)", MULTI)):
            explainer = normgrad.NormGrad(model, layers=layers, vil=vil)
            start = time.perf_counter()
            saliency = explainer(x, target=1)
            elapsed = 1000 * (time.perf_counter() - start)
            ((y, xpos),) = metrics.points(saliency).tolist()
            name = f"NormGrad {vil}{label}"
            maps[name] = saliency[0, 0]
            at = f"({xpos}, {y})" if xpos >= 0 else "nowhere"  # -1: a constant map
            print(f"{name:<22}{at:>16}{saliency.mean().item():>8.3f}{elapsed:>11.1f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("\nmatplotlib is not installed: pip install 'normgrad[viz]' to save the figure")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    titles = {name.replace("NormGrad ", ""): m for name, m in maps.items()}
    fig = normgrad.viz.compare(x[0, 0], titles, boxes=torch.tensor([box]))
    path = args.out / "quickstart.png"
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
