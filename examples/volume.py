"""NormGrad on volumes: a tiny 3-D CNN finds a small bright inclusion.

Makes synthetic volumes (smooth background, noise; half carry a small bright sphere),
trains a tiny ``Conv3d`` classifier for a few steps on the CPU, then runs the Pointing Game
in 3-D for NormGrad (single and multi-layer) and Grad-CAM, beside the centre and
random-point rates.

    python examples/volume.py [--steps 40] [--size 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

import normgrad
from normgrad import metrics


class TinyCNN3d(nn.Module):
    """Three 3x3x3 convolutions, global average pooling, a linear head."""

    def __init__(self, channels: int = 8, num_classes: int = 2) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv3d(1, channels, 3, padding=1), nn.BatchNorm3d(channels), nn.ReLU(inplace=True)
        )
        self.block2 = nn.Sequential(
            nn.Conv3d(channels, 2 * channels, 3, padding=1, stride=2), nn.ReLU(inplace=True)
        )
        self.block3 = nn.Sequential(
            nn.Conv3d(2 * channels, 2 * channels, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.fc = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.pool(x).flatten(1))


def make_volumes(
    n: int, size: int = 20, seed: int = 0, radius: float = 1.8, intensity: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Volumes ``(n, 1, size, size, size)``, labels, and per volume its inclusion's box.

    Boxes are ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in voxels, inclusive, and cover the
    sphere's voxels exactly; volumes without an inclusion get an empty ``(0, 6)`` tensor.
    """
    gen = torch.Generator().manual_seed(seed)
    axis = torch.arange(size, dtype=torch.float32)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    volumes = torch.empty(n, 1, size, size, size)
    labels = torch.zeros(n, dtype=torch.long)
    boxes: list[torch.Tensor] = []
    for i in range(n):
        centre = torch.rand(3, generator=gen) * (size - 1)
        background = 0.3 * torch.exp(
            -(
                ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
                / (0.3 * size**2)
            )
        )
        volume = background + 0.08 * torch.randn(size, size, size, generator=gen)
        box = torch.zeros(0, 6, dtype=torch.long)
        if i % 2 == 1:
            margin = math.ceil(radius) + 1
            cz, cy, cx = torch.randint(margin, size - margin, (3,), generator=gen).tolist()
            inside = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
            volume[inside] += intensity
            zs, ys, xs = torch.nonzero(inside, as_tuple=True)
            box = torch.tensor(
                [[xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()]], dtype=torch.long
            )
            labels[i] = 1
        volumes[i, 0] = volume
        boxes.append(box)
    return volumes, labels, boxes


def train(model: nn.Module, steps: int, size: int, seed: int, log: bool = True) -> None:
    """A few Adam steps on freshly generated volumes."""
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        x, labels, _ = make_volumes(16, size, seed=10_000 + seed * 1_000 + step)
        loss = nn.functional.cross_entropy(model(x), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if log and (step + 1) % 25 == 0:
            print(f"  step {step + 1:4d}/{steps}: loss {loss.item():.3f}")
    model.eval()


def run(
    steps: int = 40, size: int = 20, seed: int = 0, n_eval: int = 64, log: bool = True
) -> dict[str, float]:
    """Train, then return the Pointing Game accuracy of each method on held-out volumes."""
    torch.manual_seed(seed)  # the initial weights too: the run is the same whatever ran before
    model = TinyCNN3d()
    start = time.perf_counter()
    train(model, steps, size, seed, log)
    x, labels, boxes = make_volumes(n_eval, size, seed=seed + 1)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == labels).float().mean().item()
    positives = labels == 1
    x, boxes = x[positives], [b for b, p in zip(boxes, positives) if p]
    explainers: dict[str, normgrad.Explainer] = {
        "NormGrad conv3x3 (block1)": normgrad.NormGrad(model, "block1", "conv3x3"),
        "NormGrad conv3x3 (M)": normgrad.NormGrad(model, ["block1", "block2", "block3"], "conv3x3"),
        "NormGrad scaling (M)": normgrad.NormGrad(model, ["block1", "block2", "block3"], "scaling"),
        "Grad-CAM (block3)": normgrad.GradCAM(model, "block3"),
        "centre map": normgrad.CenterMap(),
    }
    tolerance = 3.0
    scores = {"classifier accuracy": accuracy}
    for name, explainer in explainers.items():
        hits = metrics.pointing_game(explainer(x, 1), boxes, tolerance)
        scores[name] = float(hits.nanmean())
    rates = metrics.random_point_hit_rate(boxes, x.shape[2:], tolerance)
    scores["random point"] = float(rates.nanmean())
    if log:
        print(
            f"\ntrained in {time.perf_counter() - start:.1f} s; Pointing Game, tolerance "
            f"{tolerance:g} voxels, {len(boxes)} volumes with an inclusion:"
        )
        for name, value in scores.items():
            print(f"  {name:<28}{value:.3f}")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.steps, args.size, args.seed)


if __name__ == "__main__":
    main()
