"""Literal references of the regions' geometry: boxes against the pixel centres of their
map, one axis at a time."""

from __future__ import annotations


def reference_outside(row: list[float], spatial: tuple[int, ...]) -> bool:
    """A box (x, y[, z] mins then maxes) lies wholly outside: along some axis it ends
    before the first pixel centre or starts after the last."""
    ndim = len(spatial)
    sizes = spatial[::-1]  # (x, y[, z])
    return any(row[a + ndim] < 0 or row[a] > sizes[a] - 1 for a in range(ndim))
