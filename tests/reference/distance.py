"""Literal references of the pointing distances, their hits and the Pointing Game curve.

A distance is the largest float ``d`` with ``d * d`` at most the smallest squared distance
from the point to a region pixel, so that ``d < tolerance`` (or ``d == 0``) is a hit
exactly when the Pointing Game says so.
"""

from __future__ import annotations

import itertools
import math
import struct

import torch

from .pointing import reference_point


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


def reference_threshold(dist2: float) -> float:
    """The largest float d with d * d <= dist2 (0 for 0): bisection in Python over the bit
    patterns of the non-negative floats (ordered as their values), then checked to be the
    largest by stepping one float up."""
    if dist2 == 0:
        return 0.0
    low, high = 0, struct.unpack("<q", struct.pack("<d", math.inf))[0] + 1
    while high - low > 1:
        middle = (low + high) // 2
        value = _float(middle)
        if value * value <= dist2:
            low = middle
        else:
            high = middle
    d = _float(low)
    above = math.nextafter(d, math.inf)
    assert d * d <= dist2 and (above * above > dist2 or d == math.inf)
    return d


def reference_distances(
    saliency: torch.Tensor, masks: torch.Tensor, spacing: list[float]
) -> list[float]:
    """From the first maximum (walked) to every region pixel (walked): the smallest squared
    distance, summed in array order as the Pointing Game does, and its threshold; NaN for
    a sample without a region pixel, inf for a constant map."""
    out = []
    for n in range(saliency.shape[0]):
        if not bool(masks[n].any()):
            out.append(math.nan)
            continue
        point = reference_point(saliency[n])
        if point[0] < 0:
            out.append(math.inf)
            continue
        best = math.inf
        for idx in itertools.product(*(range(s) for s in masks[n].shape)):
            if masks[n][idx]:
                d2 = 0.0
                for i, p, s in zip(idx, point, spacing):
                    d2 = d2 + ((i - p) * s) * ((i - p) * s)
                best = min(best, d2)
        out.append(reference_threshold(best))
    return out


def reference_hits(distances: list[float], tolerance: float) -> list[float]:
    """1.0 for a distance below ``tolerance`` (or 0), 0.0 above, NaN kept."""
    return [math.nan if math.isnan(d) else float(d < tolerance or d == 0) for d in distances]


def reference_curve_hits(distances: list[float], tolerances: list[float]) -> list[int]:
    """The hits counted one distance at a time at each tolerance (NaN: not counted)."""
    out = []
    for t in tolerances:
        hits = 0
        for x in distances:
            if not math.isnan(x) and (x < t or x == 0):
                hits += 1
        out.append(hits)
    return out


def reference_curve_area(distances: list[float], max_tolerance: float, steps: int) -> float:
    """The area under the hit rate over tolerances ``[0, max_tolerance]`` (divided by
    ``max_tolerance``) by the midpoint rule on ``steps`` cells: off by at most
    ``1 / steps`` from the exact area of the step function. NaN without a counted
    distance."""
    counted = [x for x in distances if not math.isnan(x)]
    if not counted:
        return math.nan
    width = max_tolerance / steps
    total = 0.0
    for k in range(steps):
        t = (k + 0.5) * width
        total += sum(1 for x in counted if x < t or x == 0) / len(counted)
    return total / steps
