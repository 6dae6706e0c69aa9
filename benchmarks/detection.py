"""The detection metrics (FROC, energy pointing game) on 1,000 maps of 600x600, against one
read of the maps, and the cost of deletion/insertion in forward passes per image."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from harness import measure_group

from normgrad import metrics


def detection_maps(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Maps like Grad-CAM's or NormGrad's at the last block: a 19x19 random map per image,
    upsampled bilinearly, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 1, size, size)
    for start in range(0, n, 50):
        low = torch.rand(min(50, n - start), 1, 19, 19, generator=gen)
        out[start : start + 50] = F.interpolate(low, size=(size, size), mode="bilinear")
    return out


def detection_objects(n: int, size: int, seed: int = 0) -> list[list[metrics.Shape]]:
    """Half the images without objects, the others 1 to 3 boxes, ellipses or polygons."""
    gen = torch.Generator().manual_seed(seed)
    objects: list[list[metrics.Shape]] = []
    for i in range(n):
        shapes: list[metrics.Shape] = []
        for _ in range(0 if i % 2 else int(torch.randint(1, 4, (1,), generator=gen))):
            x, y = (torch.randint(0, size - 80, (2,), generator=gen) + 0).tolist()
            w, h = torch.randint(8, 80, (2,), generator=gen).tolist()
            kind = int(torch.randint(0, 3, (1,), generator=gen))
            if kind == 0:
                shapes.append(metrics.Box(x, y, x + w, y + h))
            elif kind == 1:
                shapes.append(metrics.Ellipse(x, y, x + w, y + h))
            else:
                shapes.append(metrics.Polygon([(x, y), (x + w, y + h // 3), (x + w // 2, y + h)]))
        objects.append(shapes)
    return objects


class CountingModel(torch.nn.Module):
    """A tiny classifier that counts the images it is called on."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
        self.images = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        self.calls += 1
        out: torch.Tensor = self.net(x)
        return out


def bench_detection(
    n: int, size: int, device: torch.device, t: float, rounds: int
) -> dict[str, Any]:
    saliency = detection_maps(n, size).to(device)
    objects = detection_objects(n, size)
    boxes = [
        torch.tensor([s.bounds() for s in shapes], dtype=torch.float64).reshape(-1, 4)
        for shapes in objects
    ]
    probabilities = torch.rand(n, generator=torch.Generator().manual_seed(1)).to(device)
    result = metrics.froc(saliency, objects, probabilities=probabilities)
    timed = measure_group(
        {
            "normgrad peaks (k=10, min_distance=15)": lambda: metrics.peaks(
                saliency, 10, min_distance=15
            ),
            "normgrad froc (shapes, k=10)": lambda: metrics.froc(
                saliency, objects, probabilities=probabilities
            ),
            "normgrad energy_pointing_game (boxes)": lambda: metrics.energy_pointing_game(
                saliency, boxes
            ),
            "normgrad energy_pointing_game (shapes)": lambda: metrics.energy_pointing_game(
                saliency, objects
            ),
            "one read of the maps (sum)": lambda: saliency.sum(),
        },
        device,
        t,
        rounds,
    )
    counting = CountingModel()
    steps, batch = 20, 32
    metrics.deletion_insertion(
        counting, torch.rand(8, 3, 16, 16), torch.rand(8, 16, 16), steps=steps, batch_size=batch
    )
    return {
        "maps": n,
        "size": size,
        "froc": result.froc,
        "objects": result.objects,
        "deletion_insertion": {
            "steps": steps,
            "batch_size": batch,
            "images": 8,
            "forward images per image": counting.images / 8,
            "model calls for 8 images": counting.calls,
        },
        **timed,
    }
