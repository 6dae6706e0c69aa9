"""Literal references of the Pointing Game: the point, box masks, hits and the random point,
walked pixel by pixel.

Coordinates are in array order (``(y, x)`` or ``(z, y, x)``); boxes are inclusive, written
``(x, y[, z])`` mins then maxes. A hit is a region pixel whose distance to the point is
strictly below the tolerance, the square of the tolerance written as a product (never
``**``), or the point itself on the region (a hit at any tolerance).
"""

from __future__ import annotations

import itertools
import math

import torch


def _cells(shape: tuple[int, ...] | torch.Size) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(s) for s in shape)))


def reference_point(saliency: torch.Tensor) -> tuple[int, ...]:
    """First maximum in row-major order, found by walking every pixel; -1 in every
    coordinate when all pixels are equal (no maximum to point at)."""
    best, where = -math.inf, None
    values = set()
    for idx in _cells(saliency.shape):
        value = float(saliency[idx])
        values.add(value)
        if value > best:
            best, where = value, idx
    assert where is not None
    return where if len(values) > 1 else (-1,) * saliency.ndim


def reference_box_mask(boxes: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Pixels covered by inclusive boxes (x, y[, z] mins then maxes), walked one by one."""
    mask = torch.zeros(shape, dtype=torch.bool)
    ndim = len(shape)
    for box in boxes.tolist():
        lo_xyz, hi_xyz = box[:ndim], box[ndim:]
        for idx in _cells(shape):
            xyz = idx[::-1]  # array order (z, y, x) -> (x, y, z)
            if all(lo <= c <= hi for c, lo, hi in zip(xyz, lo_xyz, hi_xyz)):
                mask[idx] = True
    return mask


def reference_pointing_game(
    saliency: torch.Tensor, masks: torch.Tensor, tolerance: float, spacing: list[float]
) -> list[float]:
    """Maps ``(N, *spatial)`` and masks ``(N, *spatial)``: 1.0 for a hit, 0.0 for a miss
    (a constant map points nowhere), NaN for a sample without a region pixel."""
    out = []
    for n in range(saliency.shape[0]):
        if not bool(masks[n].any()):
            out.append(math.nan)
            continue
        point = reference_point(saliency[n])
        hit = False
        for idx in _cells(masks[n].shape):
            if masks[n][idx] and point[0] >= 0:  # a constant map points nowhere: a miss
                d2 = sum(((i - p) * s) ** 2 for i, p, s in zip(idx, point, spacing))
                # the documented rule squares the tolerance as a product, never with **
                if d2 < tolerance * tolerance or d2 == 0:  # on the region: a hit at any tolerance
                    hit = True
        out.append(1.0 if hit else 0.0)
    return out


def reference_random_rate(mask: torch.Tensor, tolerance: float, spacing: list[float]) -> float:
    """The share of the pixels that would be a hit as the point: the hit rate of a point
    drawn uniformly at random."""
    pixels = _cells(mask.shape)
    targets = [p for p in pixels if mask[p]]
    good = 0
    for p in pixels:
        if any(
            sum(((a - b) * s) ** 2 for a, b, s in zip(p, t, spacing)) < tolerance * tolerance
            or p == t
            for t in targets
        ):
            good += 1
    return good / len(pixels)


def reference_box_hits(
    saliency: torch.Tensor, boxes: list[torch.Tensor], tolerance: float
) -> list[int]:
    """The Pointing Game of 2-D maps ``(N, 1, H, W)`` by hand against their first box: 1 or
    0 per image with a box, nothing for one without.

    The point is the first maximum in row-major order, found by walking every pixel; a hit
    is a pixel of the first box strictly within ``tolerance`` of it. The boxes
    ``(x0, y0, x1, y1)`` are inclusive and lie inside the image, and no map is constant
    (what the callers draw).
    """
    out = []
    for sal, box in zip(saliency[:, 0].tolist(), boxes):
        if box.numel() == 0:
            continue
        best, point = -math.inf, (0, 0)
        for y, row in enumerate(sal):
            for x, value in enumerate(row):
                if value > best:
                    best, point = value, (y, x)
        x0, y0, x1, y1 = (int(v) for v in box[0].tolist())
        hit = any(
            (y - point[0]) ** 2 + (x - point[1]) ** 2 < tolerance * tolerance
            for y in range(y0, y1 + 1)
            for x in range(x0, x1 + 1)
        )
        out.append(int(hit))
    return out
