"""The Pointing Game at every tolerance: one distance per image, from which it is read."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import check_spacing
from .._deferred import deferred_checks
from .._grid import squared_distances
from ._maps import as_maps, first_maxima
from ._pointing import spacing_tensor
from ._regions.prepared import PreparedRegions, Regions, prepare_regions

# Elements per chunk when masks are searched for the pixel nearest to the point.
_CHUNK_ELEMENTS = 1 << 24

# The bit pattern of +inf in float64: non-negative floats, read as int64, are in the same
# order as their values, from 0 (0.0) to this (inf).
_INF_BITS = 0x7FF0000000000000

# A squared distance at least this large is a normal float64 whose square root's
# neighbours decide it (see _threshold); smaller positive ones are searched bit by bit.
_NORMAL_SQUARE = 2.0**-1000


def _threshold(dist2: torch.Tensor, narrow: bool) -> torch.Tensor:
    """The largest float64 ``d >= 0`` with ``d * d <= dist2`` (the product rounded), for
    float64 squared distances ``dist2 >= 0`` (``inf`` allowed); 0 where ``dist2`` is 0.

    For every float ``t > 0``, ``d < t`` is then exactly ``dist2 < t * t``: the product is
    non-decreasing in ``t``, so the tolerances whose square exceeds ``dist2`` are those above
    the largest one whose square does not. ``d`` is within two units in the last place of
    ``sqrt(dist2)``.

    ``narrow``: every positive ``dist2`` is at least ``_NORMAL_SQUARE``; then ``d`` lies
    within three units in the last place of the correctly rounded ``sqrt(dist2)`` and is
    found among those seven neighbours at once. Otherwise (voxel sizes below about 1e-150)
    the rounding of tiny squares to subnormal numbers can move it further, and it is found by
    a binary search over the bit patterns (63 steps).
    """
    if narrow:
        root = torch.sqrt(dist2).view(torch.int64)
        steps = torch.arange(-3, 4, device=dist2.device)
        bits = (root[:, None] + steps).clamp(0, _INF_BITS)
        candidates = bits.view(torch.float64)
        fits = candidates * candidates <= dist2[:, None]
        # candidates increase and ``fits`` holds for a prefix of them (0 always fits)
        found = torch.where(fits, candidates, torch.zeros_like(candidates)).amax(dim=1)
    else:
        low = torch.zeros_like(dist2, dtype=torch.int64)  # 0.0 fits every dist2 >= 0
        high = torch.full_like(low, _INF_BITS + 1)  # past +inf: never fits
        for _ in range(64):
            middle = low + (high - low) // 2
            value = middle.view(torch.float64)
            fits = value * value <= dist2
            low = torch.where(fits, middle, low)
            high = torch.where(fits, high, middle)
        found = low.view(torch.float64)
    return torch.where(dist2 == 0, torch.zeros_like(found), found)


def _squared_to_boxes(
    points: torch.Tensor, regions: PreparedRegions, spacing: torch.Tensor
) -> torch.Tensor:
    """Squared distance ``(N,)`` from each point to its nearest box pixel (``inf``: none),
    with the very operations of the Pointing Game's box rule."""
    owner, lo, hi = regions.owner, regions.low, regions.high
    p = points[owner].to(torch.float64)
    nearest = torch.maximum(torch.minimum(p, hi), lo)
    dist2 = (((p - nearest) * spacing) ** 2).sum(dim=1)
    dist2 = torch.where(regions.valid, dist2, torch.full_like(dist2, math.inf))
    out = torch.full((points.shape[0],), math.inf, dtype=torch.float64, device=points.device)
    return out.scatter_reduce_(0, owner, dist2, reduce="amin", include_self=True)


def _squared_to_masks(
    points: torch.Tensor, masks: torch.Tensor, spacing: torch.Tensor
) -> torch.Tensor:
    """Squared distance ``(N,)`` from each point to its nearest mask pixel (``inf``: none).

    Equal, bit for bit, to the minimum over the mask of the Pointing Game's distance grid
    (``squared_distances``), which sums the axes' terms in array order,
    ``(t_z + t_y) + t_x``. The last axis is reduced first: rounding is monotone, so the
    minimum over a row of ``a + t_x`` is ``a`` plus the row's smallest ``t_x``, and
    ``t_x = ((x - p_x) s_x)^2`` is smallest at the masked ``x`` nearest to ``p_x`` (the
    same value on either side), found on integers.
    """
    n, *spatial = masks.shape
    ndim = len(spatial)
    width = spatial[-1]
    index = torch.int16 if width < 2**15 else torch.int64
    chunk = max(1, _CHUNK_ELEMENTS // max(1, math.prod(spatial)))
    columns = torch.arange(width, device=masks.device)
    out = [torch.empty(0, dtype=torch.float64, device=masks.device)]  # for N = 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        p = points[start:stop]
        m = stop - start
        gap = (columns[None, :] - p[:, -1:]).abs().to(index)  # (m, W)
        gap = gap.view(m, *([1] * (ndim - 1)), width)
        nearest = torch.where(masks[start:stop], gap, torch.full_like(gap, width)).amin(-1)
        none = nearest == width  # rows without a mask pixel
        # the same operations as squared_distances on the last axis, at |x - p_x|
        t_x = ((nearest.to(torch.float64)) * spacing[-1]) ** 2
        t_x = torch.where(none, torch.full_like(t_x, math.inf), t_x)
        prefix = torch.zeros((m, *spatial[:-1]), dtype=torch.float64, device=masks.device)
        for axis, size in enumerate(spatial[:-1]):
            term = squared_distances(p[:, axis : axis + 1], (size,), spacing[axis : axis + 1])
            shape = [m] + [1] * (ndim - 1)
            shape[axis + 1] = size
            prefix = prefix + term.view(shape)
        out.append((prefix + t_x).flatten(1).amin(dim=1))
    return torch.cat(out)


def pointing_distances(
    saliency: torch.Tensor,
    regions: Regions,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    """Distance from each map's point to the nearest pixel of its regions: the Pointing Game
    at every tolerance at once.

    The point is the map's first maximum ([`points`][normgrad.metrics.points]), the
    distance is Euclidean between pixel (voxel) centres, in pixels or in the units of
    ``spacing``, exact: boxes are measured in closed form (the box pixel nearest the point
    is the point clamped to the box), masks (and ellipses and polygons, rasterised by
    [`prepare_regions`][normgrad.metrics.prepare_regions]) by a search of the mask, batched,
    on the maps' device.

    The Pointing Game at tolerance ``t`` is read from it bit for bit:
    ``pointing_game(saliency, regions, t, spacing)`` equals
    [`pointing_hits(distances, t)`][normgrad.metrics.pointing_hits], that is
    ``(distance < t) | (distance == 0)``, for every ``t >= 0``. To make that exact, the
    distance is the largest float64 whose square, rounded, does not exceed the squared
    distance the Pointing Game compares (within two units in the last place of the exact
    distance: 2.0 for a region 2 pixels away, 1.4142135623730949 for one pixel diagonally).

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN.
        regions: as for [`pointing_game`][normgrad.metrics.pointing_game]: masks, boxes
            (a list or padded), ellipses and polygons, or
            [`PreparedRegions`][normgrad.metrics.PreparedRegions].
        spacing: size of a pixel (voxel) along each array dimension, e.g. millimetres.

    Returns:
        float64 tensor ``(N,)`` on the saliency's device: 0 when the point is on a region
        pixel, ``inf`` for a constant map (it points nowhere: a miss at every tolerance),
        NaN where the sample has no region (not counted, as in the Pointing Game).

    Examples:
        >>> import torch
        >>> from normgrad import metrics
        >>> maps = torch.zeros(3, 1, 20, 20); maps[:2, 0, 5, 5] = 1
        >>> box, none = torch.tensor([[8, 9, 12, 12]]), torch.zeros(0, 4)
        >>> # a 3-4-5 triangle; no region; a constant map
        >>> metrics.pointing_distances(maps, [box, none, box]).tolist()
        [5.0, nan, inf]
    """
    maps = as_maps(saliency)
    with deferred_checks():  # the regions' checks and the maps' read together
        prepared = prepare_regions(regions, maps.shape, maps.device)
        points = first_maxima(maps)
    return distances_from_points(points, prepared, spacing)


def distances_from_points(
    points: torch.Tensor, prepared: PreparedRegions, spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """``pointing_distances`` from first maxima ``(N, ndim)`` and prepared regions."""
    ndim = points.shape[1]
    space = spacing_tensor(spacing, ndim, points.device)
    pointed = (points >= 0).all(dim=1)  # a constant map points nowhere
    if prepared.filled:
        dist2 = _squared_to_boxes(points.clamp_min(0), prepared, space)
    else:
        dist2 = _squared_to_masks(points.clamp_min(0), prepared.to_masks(), space)
    smallest = min(check_spacing(spacing, ndim) or [1.0])
    distances = _threshold(dist2, narrow=smallest * smallest >= _NORMAL_SQUARE)
    distances = torch.where(pointed, distances, torch.full_like(distances, math.inf))
    return torch.where(prepared.present(), distances, torch.full_like(distances, math.nan))
