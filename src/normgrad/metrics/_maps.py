"""Reading saliency maps: accepted layouts, and the first maximum of each map."""

from __future__ import annotations

import math

import torch

from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe

# Elements per block when maps are searched for their maximum (see points).
_BLOCK_ELEMENTS = 4096


def as_maps(saliency: object, argument: str = "saliency") -> torch.Tensor:
    """``(N, *spatial)`` view of ``(N, 1, *spatial)`` or ``(N, *spatial)`` maps, 2-D or 3-D,
    each of at least one pixel (``N = 0``, an empty batch, is fine)."""
    if not isinstance(saliency, torch.Tensor):
        raise ArgumentTypeError(f"{argument}: expected a tensor, got {describe(saliency)}")
    maps = saliency
    if maps.ndim in (4, 5) and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim not in (3, 4):
        raise ShapeError(
            f"{argument}: expected maps of shape (N, 1, H, W), (N, H, W), (N, 1, D, H, W) or "
            f"(N, D, H, W), got shape {tuple(saliency.shape)}",
            saliency.shape,
        )
    if maps.is_complex() or maps.dtype == torch.bool:
        raise ArgumentTypeError(f"{argument}: expected real values, got dtype {maps.dtype}")
    if 0 in maps.shape[1:]:
        raise ShapeError(
            f"{argument}: expected maps of at least one pixel, got shape "
            f"{tuple(saliency.shape)} (a spatial dimension of size 0); an empty batch is "
            "(0, 1, H, W)",
            saliency.shape,
        )
    return maps


def _block_length(length: int, row: int, block: int) -> int:
    """Largest divisor of ``length`` that is at most ``max(block, row)``."""
    for size in range(min(length, max(block, row)), 0, -1):
        if length % size == 0:
            return size
    return 1


def points(saliency: torch.Tensor, block: int = _BLOCK_ELEMENTS) -> torch.Tensor:
    """The first maximum of each map in row-major (C) order: the Pointing Game's point.

    ``argmax`` over a whole map is slow (it tracks indices element by element); instead each
    flattened map is cut into contiguous blocks of about ``block`` elements whose maxima are
    taken at memory speed, then the first block holding the map's maximum is searched for
    its first occurrence: the same point, first in row-major order.

    A constant map (all values equal, e.g. the all-zero saliency of a layer whose map
    carries no spatial information) has no maximum to point at: its point is ``-1`` in
    every coordinate, never its first pixel (which would score hits for objects in the
    top-left corner). Test for it with ``(p < 0).any(dim=1)`` before indexing with it.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN.
        block: elements per block of the search (a tuning knob; the result does not
            depend on it).

    Returns:
        int64 tensor ``(N, ndim)`` of indices in array order (``(y, x)`` or ``(z, y, x)``),
        ``-1`` for a constant map.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import points
        >>> maps = torch.zeros(2, 1, 4, 5); maps[0, 0, 2, 3] = 1; maps[0, 0, 3, 0] = 1
        >>> points(maps).tolist()
        [[2, 3], [-1, -1]]
    """
    return first_maxima(as_maps(saliency), block)


def _refuse_nan(maxima: list[float]) -> None:
    bad = sum(1 for v in maxima if math.isnan(v))
    if bad:
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN, got NaN in {bad} map(s); a NaN has no place "
            "in a ranking, so no point can be chosen"
        )


def first_maxima(maps: torch.Tensor, block: int = _BLOCK_ELEMENTS) -> torch.Tensor:
    """[`points`][normgrad.metrics.points] of maps already read by ``as_maps``
    ``(N, *spatial)``: ``-1`` in every coordinate for a constant map."""
    n, *spatial = maps.shape
    length = math.prod(spatial)
    size = _block_length(length, spatial[-1], block)
    blocks = maps.reshape(n, length // size, size)
    block_max = blocks.amax(dim=2)
    top = block_max.amax(dim=1)
    if maps.is_floating_point():  # the maxima are read with the call's other checks
        with deferred_checks() as checks:
            checks.add(top, _refuse_nan)
    first = (block_max == top[:, None]).to(torch.uint8).argmax(dim=1)
    chosen = torch.arange(n, device=maps.device) * blocks.shape[1] + first
    values = blocks.reshape(-1, size).index_select(0, chosen)
    offset = (values == top[:, None]).to(torch.uint8).argmax(dim=1)
    flat = first * size + offset
    coords = []
    for extent in reversed(spatial):
        coords.append(flat % extent)
        flat = flat // extent
    found = torch.stack(coords[::-1], dim=1)
    constant = top == maps.reshape(n, length).amin(dim=1)
    return torch.where(constant[:, None], torch.full_like(found, -1), found)
