"""Literal reference of the peaks: the local maxima of a map walked pixel by pixel, then
suppressed greedily by their distances in spacing units."""

from __future__ import annotations

import itertools
import math

import torch


def reference_peaks(
    m: torch.Tensor, k: int, min_distance: float, spacing: list[float]
) -> list[tuple[tuple[int, ...], float]]:
    """Pixel by pixel: the local maxima above the minimum (every neighbour within the map
    no higher), by decreasing value then position, kept when far enough from those kept
    (the distance: the root of the squares of the steps times the voxel sizes)."""
    shape = tuple(m.shape)
    cells = list(itertools.product(*(range(s) for s in shape)))
    lowest = min(float(m[c]) for c in cells)
    maxima = []
    for c in cells:
        around = [
            tuple(a + d for a, d in zip(c, step))
            for step in itertools.product((-1, 0, 1), repeat=len(shape))
        ]
        inside = [q for q in around if all(0 <= a < s for a, s in zip(q, shape))]
        if float(m[c]) > lowest and all(float(m[q]) <= float(m[c]) for q in inside):
            maxima.append((c, float(m[c])))
    maxima.sort(key=lambda cv: (-cv[1], cv[0]))
    kept: list[tuple[tuple[int, ...], float]] = []
    for c, value in maxima:
        far = [
            math.sqrt(sum(((a - b) * s) * ((a - b) * s) for a, b, s in zip(c, q, spacing)))
            for q, _ in kept
        ]
        if len(kept) < k and all(d >= min_distance for d in far):
            kept.append((c, value))
    return kept
