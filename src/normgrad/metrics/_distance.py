"""The Pointing Game at every tolerance: one distance per image, and the hit-rate curve."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_confidence, check_number, check_spacing, check_tolerance
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._grid import squared_distances
from ._maps import as_maps, first_maxima
from ._pointing import spacing_tensor
from ._regions import PreparedRegions, Regions, prepare_regions
from ._statistics import wilson_interval

# Elements per chunk when masks are searched for the pixel nearest to the point.
_CHUNK_ELEMENTS = 1 << 24

# The bit pattern of +inf in float64: non-negative floats, read as int64, are in the same
# order as their values, from 0 (0.0) to this (inf).
_INF_BITS = 0x7FF0000000000000

# A squared distance at least this large is a normal float64 whose square root's
# neighbours decide it (see _threshold); smaller positive ones are searched bit by bit.
_NORMAL_SQUARE = 2.0**-1000

# Tolerances of a curve drawn when none are given: 0 to the maximum in this many steps.
_DEFAULT_STEPS = 100


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
    prepared = prepare_regions(regions, maps.shape, maps.device)
    return distances_from_points(first_maxima(maps), prepared, spacing)


def distances_from_points(
    points: torch.Tensor, prepared: PreparedRegions, spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """``pointing_distances`` from first maxima ``(N, ndim)`` and prepared regions."""
    ndim = points.shape[1]
    space = spacing_tensor(spacing, ndim, points.device)
    pointed = (points >= 0).all(dim=1)  # a constant map points nowhere
    if prepared.masks is not None:
        dist2 = _squared_to_masks(points.clamp_min(0), prepared.masks, space)
    else:
        dist2 = _squared_to_boxes(points.clamp_min(0), prepared, space)
    smallest = min(check_spacing(spacing, ndim) or [1.0])
    distances = _threshold(dist2, narrow=smallest * smallest >= _NORMAL_SQUARE)
    distances = torch.where(pointed, distances, torch.full_like(distances, math.inf))
    return torch.where(prepared.present(), distances, torch.full_like(distances, math.nan))


def _as_distances(distances: object, argument: str = "distances") -> torch.Tensor:
    """Distances ``(N,)`` as float64: each NaN (not counted), ``>= 0``, or ``inf``."""
    what = f"{argument}: expected float64 distances (N,) from pointing_distances"
    d: object = distances
    if isinstance(d, Sequence) and not isinstance(d, (str, bytes)):
        try:
            d = torch.as_tensor(d, dtype=torch.float64)
        except (TypeError, ValueError):
            raise ArgumentTypeError(f"{what}, got {describe(distances)}") from None
    if not isinstance(d, torch.Tensor):
        raise ArgumentTypeError(f"{what} (a tensor or a list), got {describe(distances)}")
    if d.ndim != 1:
        hint = " (to score maps, pass the regions too)"
        raise ShapeError(f"{what}, got shape {tuple(d.shape)}{hint}", d.shape)
    if d.dtype != torch.float64:
        raise ArgumentTypeError(
            f"{what}, got dtype {d.dtype}; rounded to fewer bits they no longer give the "
            "Pointing Game exactly (store them as float64, or as text with repr)"
        )
    if bool((d < 0).any()):
        raise InvalidArgumentError(
            f"{argument}: expected distances >= 0 (NaN: not counted, inf: a constant map), "
            f"got {d[d < 0][:3].tolist()}"
        )
    return d


def pointing_hits(distances: torch.Tensor, tolerance: float = 15) -> torch.Tensor:
    """The Pointing Game at ``tolerance`` read from
    [`pointing_distances`][normgrad.metrics.pointing_distances]: equal, bit for bit, to
    [`pointing_game`][normgrad.metrics.pointing_game] with the same maps, regions and
    spacing.

    A hit is ``distance < tolerance`` (a region exactly ``tolerance`` away is a miss), or
    ``distance == 0`` (a point on a region pixel is a hit at any tolerance, 0 included).

    Args:
        distances: float64 ``(N,)`` as ``pointing_distances`` returns them (NaN: no region).
        tolerance: radius of the disk, in the distances' units.

    Returns:
        float32 tensor ``(N,)`` on the distances' device: 1.0 for a hit, 0.0 for a miss,
        NaN where the distance is NaN.

    Examples:
        >>> import torch
        >>> from normgrad import metrics
        >>> inf, nan = float("inf"), float("nan")
        >>> d = torch.tensor([0.0, 2.0, 3.0, inf, nan], dtype=torch.float64)
        >>> metrics.pointing_hits(d, tolerance=3)
        tensor([1., 1., 0., 0., nan])
    """
    d = _as_distances(distances)
    t = check_tolerance(tolerance)
    hit = ((d < t) | (d == 0)).to(torch.float32)
    return torch.where(torch.isnan(d), torch.full_like(hit, math.nan), hit)


@dataclass(frozen=True)
class PointingGameCurve:
    """The Pointing Game's hit rate at each tolerance, with Wilson intervals, and the
    normalised area under it; made by
    [`pointing_game_curve`][normgrad.metrics.pointing_game_curve].

    Attributes:
        tolerances: the tolerances at which the hit rate is read, in the distances'
            units (pixels, or ``spacing`` units), in the order given.
        hit_rate: hits over counted images at each of ``tolerances`` (NaN when none is
            counted).
        low: the lower end of the Wilson interval at each tolerance.
        high: the upper end of the Wilson interval at each tolerance.
        hits: the hits at each tolerance.
        auc: the area under the hit rate over ``[0, max_tolerance]``, divided by
            ``max_tolerance``: the mean over counted images of
            ``clamp(1 - distance / max_tolerance, 0, 1)``, in ``[0, 1]`` (NaN when none
            is counted).
        max_tolerance: the upper end ``T`` of the area (compare areas only at one
            ``T``).
        counted: the images with a region: the denominator of every rate.
        skipped: the images without a region, not counted.
        confidence: the level of the Wilson intervals, in (0, 1).
    """

    tolerances: tuple[float, ...]
    hit_rate: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    hits: tuple[int, ...]
    auc: float
    max_tolerance: float
    counted: int
    skipped: int
    confidence: float

    def __str__(self) -> str:
        return (
            f"AUC {self.auc:.3f} over tolerances [0, {self.max_tolerance:g}] "
            f"({self.counted} images, {len(self.tolerances)} tolerances)"
        )


def pointing_game_curve(
    saliency_or_distances: torch.Tensor | Sequence[float],
    regions: Regions | None = None,
    tolerances: Sequence[float] | torch.Tensor | None = None,
    *,
    max_tolerance: float | None = None,
    spacing: Sequence[float] | None = None,
    confidence: float = 0.95,
) -> PointingGameCurve:
    r"""The Pointing Game at every tolerance: hit rate with its Wilson interval at each of
    ``tolerances``, and the normalised area under the curve up to ``max_tolerance``.

    The hit rate at ``t`` is that of [`pointing_game`][normgrad.metrics.pointing_game] at
    ``t``, bit for bit (it is read from
    [`pointing_distances`][normgrad.metrics.pointing_distances] with
    [`pointing_hits`][normgrad.metrics.pointing_hits]). Pass the maps and their regions,
    or the distances alone (e.g. as recorded by a run, concatenated over batches).

    The area is exact, not a sum over ``tolerances``: the hit rate
    $h(t) = \frac1n \#\{i : d_i < t\}$ is a step function, and
    $\frac{1}{T}\int_0^T h(t)\,dt = \frac1n \sum_i \max(0, 1 - d_i / T)$ with
    $T$ = ``max_tolerance``: 1 when every point is on its region, 0 when none is closer than
    $T$ (a constant map, distance ``inf``, adds 0).

    Args:
        saliency_or_distances: maps ``(N, 1, *spatial)`` or ``(N, *spatial)`` with
            ``regions``; or, without ``regions``, float64 distances ``(N,)`` from
            ``pointing_distances`` (NaN: not counted).
        regions: the regions of the maps, as for ``pointing_game``; ``None`` when distances
            are passed.
        tolerances: the tolerances at which the hit rate is read (numbers >= 0, in the
            distances' units), in the order given; default: 101 from 0 to
            ``max_tolerance``.
        max_tolerance: the upper end ``T > 0`` of the area; default: the largest of
            ``tolerances``. One of the two must be given. Compare areas only at one ``T``.
        spacing: size of a pixel (voxel) along each array dimension, with maps only (the
            distances carry it already).
        confidence: level of the Wilson intervals, in (0, 1).

    Returns:
        A [`PointingGameCurve`][normgrad.metrics.PointingGameCurve].

    Examples:
        >>> import torch
        >>> from normgrad import metrics
        >>> inf, nan = float("inf"), float("nan")
        >>> d = torch.tensor([0.0, 2.0, 5.0, inf, nan], dtype=torch.float64)
        >>> curve = metrics.pointing_game_curve(d, tolerances=[0, 2, 4, 8])
        >>> curve.hit_rate, curve.counted
        ((0.25, 0.25, 0.5, 0.75), 4)
        >>> round(curve.auc, 4)  # (1 + 6/8 + 3/8 + 0) / 4
        0.5312
    """
    level = check_confidence(confidence)
    if regions is None:
        if spacing is not None:
            raise InvalidArgumentError(
                "spacing: expected None with distances (they are in the units of the spacing "
                f"they were measured with), got {spacing!r}; pass spacing to "
                "pointing_distances, or pass the maps with their regions"
            )
        distances = _as_distances(saliency_or_distances, "saliency_or_distances")
    else:
        if not isinstance(saliency_or_distances, torch.Tensor):
            raise ArgumentTypeError(
                "saliency_or_distances: expected maps (a tensor) with regions, got "
                f"{describe(saliency_or_distances)}"
            )
        distances = pointing_distances(saliency_or_distances, regions, spacing)
    if tolerances is None:
        if max_tolerance is None:
            raise InvalidArgumentError(
                "tolerances: expected tolerances or max_tolerance (the upper end of the "
                "curve and its area), got neither; e.g. max_tolerance=15"
            )
        top = check_number(max_tolerance, "max_tolerance", low=0, open_low=True)
        grid = torch.linspace(0, top, _DEFAULT_STEPS + 1, dtype=torch.float64).tolist()
        grid[-1] = top
        values = tuple(grid)
    else:
        if isinstance(tolerances, torch.Tensor):
            tolerances = tolerances.tolist()
        if isinstance(tolerances, (str, bytes)) or not isinstance(tolerances, Sequence):
            raise ArgumentTypeError(
                f"tolerances: expected a sequence of numbers >= 0, got {describe(tolerances)}"
            )
        if len(tolerances) == 0:
            raise InvalidArgumentError("tolerances: expected at least one tolerance, got none")
        values = tuple(check_tolerance(t, f"tolerances[{i}]") for i, t in enumerate(tolerances))
        if max_tolerance is None:
            top = max(values)
            if top <= 0:
                raise InvalidArgumentError(
                    f"max_tolerance: expected a number > 0 for the area; the largest of "
                    f"tolerances is {top:g}: pass max_tolerance"
                )
        else:
            top = check_number(max_tolerance, "max_tolerance", low=0, open_low=True)
    counted = ~torch.isnan(distances)
    kept = distances[counted]
    total = int(kept.numel())
    skipped = int(distances.numel()) - total
    steps = torch.tensor(values, dtype=torch.float64, device=kept.device)
    hit = (kept[None, :] < steps[:, None]) | (kept[None, :] == 0)
    hits = tuple(int(h) for h in hit.sum(dim=1).tolist())
    intervals = [wilson_interval(h, total, level) for h in hits]
    rate = tuple(h / total if total else math.nan for h in hits)
    area = (1 - kept / top).clamp_min(0).mean().item() if total else math.nan
    return PointingGameCurve(
        tolerances=values,
        hit_rate=rate,
        low=tuple(lo for lo, _ in intervals),
        high=tuple(hi for _, hi in intervals),
        hits=hits,
        auc=float(area),
        max_tolerance=top,
        counted=total,
        skipped=skipped,
        confidence=level,
    )
