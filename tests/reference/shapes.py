"""Literal references of the object shapes (boxes, ellipses, polygons): each pixel centre
tested alone in exact arithmetic (``Fraction``), ``x`` the column and ``y`` the row."""

from __future__ import annotations

from fractions import Fraction

import torch

from normgrad.metrics import Box, Ellipse, Polygon


def reference_polygon(vertices: list[tuple[float, float]], x: int, y: int) -> bool:
    """Point-in-polygon on a pixel centre: on an edge, or an odd number of crossings."""
    px, py = Fraction(x), Fraction(y)
    v = [(Fraction(a), Fraction(b)) for a, b in vertices]
    crossings = 0
    for (x1, y1), (x2, y2) in zip(v, v[1:] + v[:1]):
        collinear = (x2 - x1) * (py - y1) == (y2 - y1) * (px - x1)
        if collinear and min(x1, x2) <= px <= max(x1, x2) and min(y1, y2) <= py <= max(y1, y2):
            return True
        if (y1 > py) != (y2 > py):
            crossing_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            if crossing_x > px:
                crossings += 1
    return crossings % 2 == 1


def reference_ellipse(box: tuple[float, float, float, float], x: int, y: int) -> bool:
    x0, y0, x1, y1 = (Fraction(c) for c in box)
    cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    if a == 0 or b == 0:  # a segment (or a point): the pixel must lie on it
        return x0 <= x <= x1 and y0 <= y <= y1
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1


def reference_box(box: tuple[float, ...], x: int, y: int) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def reference_contains(shape: object, x: int, y: int) -> bool:
    if isinstance(shape, Polygon):
        return reference_polygon(list(shape.vertices), x, y)
    if isinstance(shape, Ellipse):
        return reference_ellipse(shape.bounds(), x, y)
    assert isinstance(shape, Box)
    return reference_box(shape.bounds(), x, y)


def reference_mask(shape: object, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    for y in range(height):
        for x in range(width):
            mask[y, x] = reference_contains(shape, x, y)
    return mask


def reference_covers(obj: object, height: int, width: int) -> bool:
    return any(reference_contains(obj, x, y) for y in range(height) for x in range(width))
