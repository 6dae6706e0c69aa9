"""Literal references of the detection metrics: each map's peaks matched to its objects
one detection at a time, and FROC's curve counted at every threshold of the scores."""

from __future__ import annotations

import math

import torch

from .peaks import reference_peaks
from .shapes import reference_contains, reference_covers


def reference_match(detections: list[tuple[int, ...]], objects: list[object]) -> list[bool]:
    """One detection per object, in the detections' order, first open object in order."""
    found = [False] * len(objects)
    positive = []
    for y, x in detections:
        hit = False
        for j, obj in enumerate(objects):
            if not found[j] and reference_contains(obj, x, y):
                found[j], hit = True, True
                break
        positive.append(hit)
    return positive


def reference_froc(
    maps: torch.Tensor,
    objects: list[list[object]],
    k: int,
    min_distance: float,
    rates: tuple[float, ...],
    probabilities: list[float] | None = None,
) -> tuple[float, list[float], list[float]]:
    """FROC of 2-D maps ``(N, H, W)``: each map's ``k`` peaks (scaled by the image's
    probability) matched to its objects that cover a pixel; the false positives per image
    and the sensitivity at every distinct score, and the mean over ``rates`` of the best
    sensitivity at most that many false positives per image. Returns the mean, the false
    positives and the sensitivities (from the point (0, 0))."""
    n, height, width = maps.shape
    scored = []  # (score, true positive)
    total = 0
    for i in range(n):
        counted = [o for o in objects[i] if reference_covers(o, height, width)]
        total += len(counted)
        found = reference_peaks(maps[i], k, min_distance, [1.0, 1.0])
        positive = reference_match([c for c, _ in found], counted)
        p = probabilities[i] if probabilities is not None else 1.0
        scored += [(value * p, tp) for (_, value), tp in zip(found, positive)]
    thresholds = sorted({s for s, _ in scored}, reverse=True)
    fps, sens = [0.0], [0.0 if total else math.nan]
    for t in thresholds:
        fps.append(sum(1 for s, tp in scored if s >= t and not tp) / n)
        sens.append(sum(1 for s, tp in scored if s >= t and tp) / total if total else math.nan)
    at = []
    for r in rates:
        best = 0.0 if total else math.nan
        for f, s in zip(fps, sens):
            if f <= r and s > best:
                best = s
        at.append(best)
    return sum(at) / len(at), fps, sens


def reference_energy(m: torch.Tensor, objects: list[object]) -> float:
    """The energy-based pointing game of one map ``(H, W)``: the positive mass on the
    pixels of its objects over the positive mass of the map (0 for a map without positive
    mass), summed pixel by pixel; NaN when no object covers a pixel."""
    height, width = m.shape
    inside = total = 0.0
    region = False
    for y in range(height):
        for x in range(width):
            value = max(float(m[y, x]), 0.0)
            total += value
            if any(reference_contains(o, x, y) for o in objects):
                inside += value
                region = True
    if not region:
        return math.nan
    return inside / total if total > 0 else 0.0
