"""Detections matched to objects, one detection per object (FROC, multi-object game)."""

from __future__ import annotations

import torch

from ._regions.prepared import PreparedRegions


def match(
    coords: torch.Tensor, usable: torch.Tensor, objects: PreparedRegions
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy matching of detections to objects, one detection per object.

    Detections ``(N, k, ndim)`` are taken in order; each usable one (``usable`` ``(N, k)``)
    lying in an object not yet found finds the first such object (in the order given) and
    is a true positive; any other usable detection is a false positive. Returns ``(true
    positive (N, k), found objects per image (N,))``, without reading the device.
    """
    inside = objects.inside(coords) & usable[:, :, None]
    n, k, _ = inside.shape
    found = torch.zeros(n, inside.shape[2], dtype=torch.bool, device=coords.device)
    positive = torch.zeros(n, k, dtype=torch.bool, device=coords.device)
    for j in range(k):
        open_ = inside[:, j] & ~found
        hit = open_.any(dim=1)
        first = open_.to(torch.uint8).argmax(dim=1, keepdim=True)  # 0 where none is open
        found.scatter_(1, first, found.gather(1, first) | hit[:, None])
        positive[:, j] = hit
    return positive, found.sum(dim=1)
