"""The Pointing Game: is the maximum of a map on (or near) a region?"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from .._checks import check_confidence, check_spacing, check_tolerance
from .._deferred import deferred_checks
from .._grid import squared_distances
from .._transfer import to_device
from ._accumulator import Accumulator
from ._maps import as_maps, first_maxima
from ._regions.prepared import PreparedRegions, Regions, prepare_regions
from ._statistics import wilson_interval

T = TypeVar("T", torch.Tensor, np.ndarray)

# Elements per chunk when masks are compared with distance grids.
_CHUNK_ELEMENTS = 1 << 24


def spacing_tensor(
    spacing: Sequence[float] | None, ndim: int, device: torch.device
) -> torch.Tensor:
    """Voxel sizes ``(ndim,)`` in float64 (ones when ``spacing`` is None), checked."""
    values = check_spacing(spacing, ndim)
    return to_device(values or [1.0] * ndim, device, torch.float64)


def within(dist2: T, tolerance: float) -> T:
    """The Pointing Game's rule for a region pixel at squared distance ``dist2`` (a torch
    tensor or a numpy array): a hit strictly inside the disk of radius ``tolerance``
    (TorchRay's boundary), and a point on the pixel itself is a hit at any tolerance,
    also 0. The square is the product ``tolerance * tolerance`` (as
    [`pointing_distances`][normgrad.metrics.pointing_distances] assumes), never
    ``tolerance**2``, whose C ``pow`` can round an exact halfway square the other way."""
    hit: T = (dist2 < tolerance * tolerance) | (dist2 == 0)
    return hit


def _hits_from_boxes(
    points: torch.Tensor, regions: PreparedRegions, tolerance: float, spacing: torch.Tensor
) -> torch.Tensor:
    owner, lo, hi = regions.owner, regions.low, regions.high
    p = points[owner].to(torch.float64)
    # the box pixel nearest to an integer point is the point clamped to the box
    nearest = torch.maximum(torch.minimum(p, hi), lo)
    dist2 = (((p - nearest) * spacing) ** 2).sum(dim=1)
    hit_box = regions.valid & within(dist2, tolerance)
    hits = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    return hits.index_add_(0, owner, hit_box.long()) > 0


def _hits_from_masks(
    points: torch.Tensor, masks: torch.Tensor, tolerance: float, spacing: torch.Tensor
) -> torch.Tensor:
    n, *spatial = masks.shape
    chunk = max(1, _CHUNK_ELEMENTS // max(1, math.prod(spatial)))
    hits = [torch.zeros(0, dtype=torch.bool, device=masks.device)]  # for N = 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        dist2 = squared_distances(points[start:stop], spatial, spacing)
        inside = within(dist2, tolerance) & masks[start:stop]
        hits.append(inside.flatten(1).any(dim=1))
    return torch.cat(hits)


def pointing_game(
    saliency: torch.Tensor,
    regions: Regions,
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    """Pointing Game hit or miss for each map.

    Reads the device once per call: the regions' checks with the maps'.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN.
        regions: boolean masks ``(N, *spatial)``, or a sequence of N box tensors ``(K_i, 4)``
            ``(xmin, ymin, xmax, ymax)`` in pixels, inclusive (``(K_i, 6)`` with z for
            volumes), or boxes padded to one tensor ``(N, K, 4)`` with all-NaN padding rows,
            or [`PreparedRegions`][normgrad.metrics.PreparedRegions] (every form of
            [`Regions`][normgrad.metrics.Regions]). Boxes are clipped to the image; a box of
            zero width still covers its row or column of pixels; a box wholly outside the
            image covers nothing and raises a ``UserWarning`` naming its sample (a sample
            whose every region is outside is NaN: see ``PointingGame``'s ``outside``).
        tolerance: radius of the disk around the point, in pixels (or in the units of
            ``spacing``). A region exactly ``tolerance`` away is a miss; a point on a
            region pixel is a hit at any tolerance, 0 included.
        spacing: size of a pixel (voxel) along each array dimension, e.g. millimetres.

    Returns:
        float32 tensor ``(N,)`` on the saliency's device: 1.0 for a hit, 0.0 for a miss, NaN
        where the sample has no region. A constant map (e.g. all zero) has no maximum to
        point at and is a miss (see [`points`][normgrad.metrics.points]).
    """
    return pointing_game_points(saliency, regions, tolerance, spacing)[1]


def pointing_game_points(
    saliency: torch.Tensor,
    regions: Regions,
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The points ``(N, ndim)`` (array order, as [`points`][normgrad.metrics.points]) and
    the results ``(N,)`` of [`pointing_game`][normgrad.metrics.pointing_game], from one
    search for the maxima."""
    return _points_and_hits(as_maps(saliency), regions, tolerance, spacing)


def _points_and_hits(
    maps: torch.Tensor,
    regions: Regions,
    tolerance: float,
    spacing: Sequence[float] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pointing_game_points`` of maps already read by ``as_maps`` ``(N, *spatial)``: the
    layout is read once (read twice, a depth-1 volume ``(N, 1, 1, H, W)`` would become a
    2-D map)."""
    tol = check_tolerance(tolerance)
    space = spacing_tensor(spacing, maps.ndim - 1, maps.device)
    with deferred_checks():  # the regions' checks and the maps' read together
        prepared = prepare_regions(regions, maps.shape, maps.device)
        points = first_maxima(maps)
    pointed = (points >= 0).all(dim=1)  # a constant map points nowhere
    if prepared.filled:
        hit = _hits_from_boxes(points.clamp_min(0), prepared, tol, space)
    else:
        hit = _hits_from_masks(points.clamp_min(0), prepared.to_masks(), tol, space)
    result = (hit & pointed).to(torch.float32)
    return points, torch.where(prepared.present(), result, torch.full_like(result, float("nan")))


@dataclass(frozen=True)
class PointingGameResult:
    """Pointing Game accuracy over the counted samples, with a Wilson interval.

    Attributes:
        accuracy: hits over counted samples (NaN when none is counted).
        hits: the samples whose map's maximum lies within the tolerance of a region.
        total: the samples counted (those with a region).
        skipped: the samples without a region, not counted.
        low: the lower end of the Wilson interval of ``accuracy``.
        high: its upper end.
        confidence: the level of the Wilson interval, in (0, 1).
        outside: of the ``skipped`` samples, those given regions that all lie wholly
            outside the map (e.g. boxes in the original image's pixels while the maps are
            smaller; a warning names them as they arrive).
    """

    accuracy: float
    hits: int
    total: int
    skipped: int
    low: float
    high: float
    confidence: float
    outside: int = 0

    def __str__(self) -> str:
        outside = f"; {self.outside} not counted: regions outside the map" if self.outside else ""
        return (
            f"{self.accuracy:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"({self.hits}/{self.total}, {self.confidence:.0%} Wilson{outside})"
        )


class PointingGame(Accumulator):
    """Accumulates Pointing Game hits over batches: ``update`` (or ``add`` for results
    scored elsewhere), ``compute``, ``merge``, ``all_reduce``, ``reset``; one read of the
    device per call.

    As in [`pointing_game`][normgrad.metrics.pointing_game], a constant map is a miss, and a
    point on a region pixel a hit at any tolerance.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import PointingGame
        >>> game = PointingGame(tolerance=2)
        >>> maps = torch.zeros(3, 1, 8, 8); maps[:, 0, 4, 4] = 1
        >>> masks = torch.zeros(3, 8, 8, dtype=torch.bool)
        >>> masks[0, 5, 5] = True; masks[1, 0, 0] = True
        >>> game.update(maps, masks)
        tensor([1., 0., nan])
        >>> game.compute().accuracy
        0.5
    """

    _setting_names = ("tolerance", "spacing", "confidence")

    def __init__(
        self,
        tolerance: float = 15,
        spacing: Sequence[float] | None = None,
        confidence: float = 0.95,
    ) -> None:
        self.tolerance = check_tolerance(tolerance)
        self.spacing = check_spacing(spacing)
        self.confidence = check_confidence(confidence)
        self.reset()

    def reset(self) -> None:
        self.hits = 0
        self.total = 0
        self.skipped = 0
        self.outside = 0

    def update(self, saliency: torch.Tensor, regions: Regions) -> torch.Tensor:
        """Score a batch and add it; returns its per-sample results (1, 0 or NaN)."""
        maps = as_maps(saliency)
        with deferred_checks():  # the regions' and maps' checks and the counts together
            prepared = prepare_regions(regions, maps.shape, maps.device)
            results = _points_and_hits(maps, prepared, self.tolerance, self.spacing)[1]
            self.add(results, prepared.outside_samples())
        return results

    def add(self, results: torch.Tensor, outside: torch.Tensor | None = None) -> None:
        """Add per-sample results computed elsewhere (1, 0 or NaN), and which samples have
        a region wholly outside the map ``(N,)`` (bool; as the ``outside`` of
        [`PreparedRegions`][normgrad.metrics.PreparedRegions], None: none); one read."""
        counted = ~torch.isnan(results)
        given = (
            to_device(outside, counted.device) if outside is not None else torch.zeros_like(counted)
        )
        far = ~counted & given
        sums = torch.stack(
            [results.nan_to_num(0).double().sum(), counted.sum(), (~counted).sum(), far.sum()]
        )
        with deferred_checks() as checks:  # read with the call's checks, after them
            checks.add(sums.double(), self._count)

    def _count(self, sums: list[float]) -> None:
        hits, total, skipped, out = (int(v) for v in sums)
        self.hits += hits
        self.total += total
        self.skipped += skipped
        self.outside += out

    def _merge(self, other: PointingGame) -> None:
        self.hits += other.hits
        self.total += other.total
        self.skipped += other.skipped
        self.outside += other.outside

    def compute(self) -> PointingGameResult:
        accuracy = self.hits / self.total if self.total else float("nan")
        low, high = wilson_interval(self.hits, self.total, self.confidence)
        return PointingGameResult(
            accuracy,
            self.hits,
            self.total,
            self.skipped,
            low,
            high,
            self.confidence,
            self.outside,
        )
