"""The Pointing Game's hit rate over tolerances, read from the distances per image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_confidence, check_number, check_tolerance
from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._transfer import to_device
from ._distance import pointing_distances
from ._regions.prepared import Regions
from ._statistics import wilson_interval

# Tolerances of a curve drawn when none are given: 0 to the maximum in this many steps.
_DEFAULT_STEPS = 100


def _as_distances(
    distances: object, argument: str = "distances", *, check: bool = True
) -> torch.Tensor:
    """Distances ``(N,)`` as float64: each NaN (not counted), ``>= 0``, or ``inf``; with
    ``check=False`` their values are left for the caller to check with its own read."""
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
    if check and bool((d < 0).any()):
        raise _negative(d, argument)
    return d


def _negative(d: torch.Tensor, argument: str) -> InvalidArgumentError:
    """The error for distances below 0 (read once they are known to be there)."""
    return InvalidArgumentError(
        f"{argument}: expected distances >= 0 (NaN: not counted, inf: a constant map), "
        f"got {d[d < 0][:3].tolist()}"
    )


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
    read: list[float] = []
    with deferred_checks() as checks:  # the maps' and regions' checks and the sums together
        distances = _curve_distances(saliency_or_distances, regions, spacing)
        values, top = _tolerances(tolerances, max_tolerance)
        checks.add(_curve_sums(distances, values, top), read.extend)
    *hits_read, total_read, area_sum, negative = read
    if negative:
        raise _negative(distances, "saliency_or_distances")
    hits = tuple(int(h) for h in hits_read)
    total = int(total_read)
    skipped = int(distances.numel()) - total
    intervals = [wilson_interval(h, total, level) for h in hits]
    rate = tuple(h / total if total else math.nan for h in hits)
    area = area_sum / total if total else math.nan
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


def _curve_distances(
    saliency_or_distances: torch.Tensor | Sequence[float],
    regions: Regions | None,
    spacing: Sequence[float] | None,
) -> torch.Tensor:
    """The curve's distances: given, or measured from maps and regions (values unchecked)."""
    if regions is None:
        if spacing is not None:
            raise InvalidArgumentError(
                "spacing: expected None with distances (they are in the units of the spacing "
                f"they were measured with), got {spacing!r}; pass spacing to "
                "pointing_distances, or pass the maps with their regions"
            )
        return _as_distances(saliency_or_distances, "saliency_or_distances", check=False)
    if not isinstance(saliency_or_distances, torch.Tensor):
        raise ArgumentTypeError(
            "saliency_or_distances: expected maps (a tensor) with regions, got "
            f"{describe(saliency_or_distances)}"
        )
    return pointing_distances(saliency_or_distances, regions, spacing)


def _curve_sums(distances: torch.Tensor, tolerances: tuple[float, ...], top: float) -> torch.Tensor:
    """float64 ``(len(tolerances) + 3,)``: the hits at each tolerance, the images counted,
    the sum of their ``clamp(1 - distance / top, 0, 1)``, and 1 where a distance is below 0;
    made on the distances' device, so that the curve reads it once.

    A NaN distance is neither ``< t`` nor ``== 0``, so it is no hit at any tolerance.
    """
    counted = ~torch.isnan(distances)
    steps = to_device(tolerances, distances.device, torch.float64)
    d = distances[None, :]
    hits = ((d < steps[:, None]) | (d == 0)).sum(dim=1)
    closeness = (1 - distances / top).clamp_min(0)
    area = torch.where(counted, closeness, torch.zeros_like(closeness)).sum()
    negative = (distances < 0).any()
    return torch.cat(
        [hits.double(), torch.stack([counted.sum().double(), area, negative.double()])]
    )


def _tolerances(
    tolerances: Sequence[float] | torch.Tensor | None, max_tolerance: float | None
) -> tuple[tuple[float, ...], float]:
    """The tolerances of a curve, checked, and the upper end of its area."""
    if tolerances is None:
        if max_tolerance is None:
            raise InvalidArgumentError(
                "tolerances: expected tolerances or max_tolerance (the upper end of the "
                "curve and its area), got neither; e.g. max_tolerance=15"
            )
        top = check_number(max_tolerance, "max_tolerance", low=0, open_low=True)
        grid = [top * k / _DEFAULT_STEPS for k in range(_DEFAULT_STEPS)]
        values = (*grid, top)
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
    return values, top
