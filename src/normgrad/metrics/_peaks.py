r"""The peaks of a map: its highest local maxima, kept apart by non-maximum suppression.

One definition, two implementations: ``peaks_by_definition`` is the definition itself, a
few lines (the reference the fast search is tested against); [`peaks`][normgrad.metrics.peaks]
finds the same peaks reading each map about once (``_peak_search``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_number, check_positive_int, check_spacing
from .._deferred import deferred_checks
from .._transfer import to_device
from ._maps import as_maps
from ._peak_search import TUNING, Tuning, refuse_non_finite, search

# the least values per stretch of the fast search (see ``peaks``' ``block``)
_STRETCH_ELEMENTS = 96


@dataclass(frozen=True)
class Peaks:
    """The detections of a batch of maps, best first (made by [`peaks`][normgrad.metrics.peaks]).

    Attributes:
        coords: int64 ``(N, k, ndim)``: each peak's pixel in array order ``(y, x)`` /
            ``(z, y, x)``; zeros where ``valid`` is False.
        values: ``(N, k)``: the map's value at each peak, non-increasing; NaN where not
            ``valid``.
        valid: bool ``(N, k)``: False for the slots of a map with fewer than ``k`` peaks
            (always at the end).
    """

    coords: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor

    @property
    def counts(self) -> torch.Tensor:
        """How many peaks each map has ``(N,)``."""
        return self.valid.sum(dim=1)


@dataclass(frozen=True)
class Apart:
    """The rule of suppression: two pixels are apart when their distance is at least
    ``min_distance``, the distance being $\\sqrt{\\sum_a (\\Delta_a s_a)^2}$ over the axes
    in array order, with voxel sizes $s$ (``spacing``; 1 when None), the squares summed
    in float64 axis after axis and the root correctly rounded."""

    min_distance: float
    spacing: Sequence[float] | None = None

    def pixels(self, first: Sequence[int], second: Sequence[int]) -> bool:
        """The rule for two pixels, on the host."""
        total = 0.0
        for a, b, s in zip(first, second, self.spacing or [1.0] * len(first)):
            d = (a - b) * s
            total = total + d * d
        return math.sqrt(total) >= self.min_distance

    def steps(self, delta: torch.Tensor) -> torch.Tensor:
        """The rule for pixel steps ``delta`` ``(ndim, ...)`` (int64), on their device: on
        integers when every voxel size is 1 (the least squared distance that is far
        enough, found once on the host)."""
        if self.spacing is None:
            return (delta * delta).sum(dim=0) >= _reach(self.min_distance)
        total = torch.zeros(delta.shape[1:], dtype=torch.float64, device=delta.device)
        for a, s in enumerate(self.spacing):
            d = delta[a].double() * s
            total = total + d * d
        return torch.sqrt(total) >= self.min_distance


def _reach(min_distance: float) -> int:
    """The least integer squared distance ``d2`` whose root ``math.sqrt(d2)`` is at least
    ``min_distance``: ``ceil(min_distance**2)`` can be one too many (``math.sqrt(2) ** 2 >
    2``); capped beyond any map."""
    if min_distance > 2.0**31:
        return 1 << 62
    reach = math.ceil(min_distance * min_distance)
    while reach > 0 and math.sqrt(reach - 1) >= min_distance:
        reach -= 1
    while math.sqrt(reach) < min_distance:
        reach += 1
    return reach


def peaks_by_definition(
    saliency: torch.Tensor,
    k: int,
    *,
    min_distance: float = 1.0,
    spacing: Sequence[float] | None = None,
) -> Peaks:
    """[`peaks`][normgrad.metrics.peaks] as defined, literally: every local maximum (no
    pixel of its 3×3 (3×3×3) neighbourhood higher, and above the map's minimum), by
    decreasing value then row-major position, kept when ``Apart`` from every peak kept
    before, until ``k`` are kept. A loop over each map's local maxima: slow, and the
    reference the fast search is tested against."""
    maps = as_maps(saliency)
    values = maps if maps.is_floating_point() else maps.double()
    n, *spatial = maps.shape
    with deferred_checks() as checks:
        checks.add((values.isnan() | (values == math.inf)).flatten(1).any(dim=1), refuse_non_finite)
    pool = F.max_pool2d if len(spatial) == 2 else F.max_pool3d
    around = pool(values[:, None], 3, stride=1, padding=1)[:, 0]  # beyond the border: -inf
    lowest = values.flatten(1).amin(dim=1).view(-1, *[1] * len(spatial))
    local = (values >= around) & (values > lowest)
    apart = Apart(min_distance, spacing)
    coords = torch.zeros(n, k, len(spatial), dtype=torch.long)
    found = torch.full((n, k), math.nan, dtype=values.dtype)
    for i in range(n):
        cells = local[i].nonzero()  # row-major
        order = values[i][local[i]].argsort(descending=True, stable=True)
        kept: list[list[int]] = []
        for cell in cells[order].tolist():
            if len(kept) < k and all(apart.pixels(cell, other) for other in kept):
                coords[i, len(kept)] = torch.tensor(cell)
                found[i, len(kept)] = float(values[i][tuple(cell)])
                kept.append(cell)
    valid = ~found.isnan()
    return Peaks(
        to_device(coords, maps.device), to_device(found, maps.device), to_device(valid, maps.device)
    )


def peaks(
    saliency: torch.Tensor,
    k: int,
    *,
    min_distance: float = 1.0,
    spacing: Sequence[float] | None = None,
    block: int = _STRETCH_ELEMENTS,
) -> Peaks:
    r"""The ``k`` highest local maxima of each map, at least ``min_distance`` apart.

    A pixel is a *local maximum* when no pixel of its 3×3 (3×3×3) neighbourhood is higher
    and it is above the map's minimum: every pixel of a flat-topped maximum is one, a flat
    background at the minimum is not, and a constant map has none. Local maxima are taken
    in order of decreasing value, ties in row-major order (as the Pointing Game's point),
    and each is kept when its Euclidean distance to every peak kept before is at least
    ``min_distance`` (greedy non-maximum suppression), until ``k`` are kept. The first
    peak is therefore the Pointing Game's point ([`points`][normgrad.metrics.points]) unless the
    map is constant.

    Batched on the maps' device, reading each map once: each line along the last axis is
    cut into stretches (of at least ``block`` values) whose maxima are taken at memory
    speed; only the stretches with the highest maxima are searched for local maxima, and
    a local maximum is used only once every pixel as high is known to be in those
    stretches (above the highest maximum of the stretches left out). Those local maxima
    are suppressed greedily; the stretches grow for the maps where they were not enough,
    up to the whole map. Large temporaries are made a few maps at a time. The output has
    a fixed size, but the candidates do not: the device is read about three times per
    round of the search (the candidates of each few maps, their count per map, the peaks
    found per map), usually one round; NaN or +inf are refused with the call's checks.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN
            or +inf (-inf ranks below everything).
        k: how many peaks per map, ``>= 1``.
        min_distance: smallest distance between two peaks, ``>= 0``, in pixels or in the
            units of ``spacing`` (1 pixel or less keeps every local maximum, including the
            pixels of a plateau).
        spacing: size of a pixel (voxel) along each array dimension, e.g. millimetres.
        block: least values per stretch of the search (a tuning knob; the result does not
            depend on it).

    Returns:
        [`Peaks`][normgrad.metrics.Peaks] with ``coords`` ``(N, k, ndim)``, ``values`` ``(N, k)``
        and ``valid``.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import peaks
        >>> maps = torch.zeros(1, 1, 5, 6)
        >>> maps[0, 0, 1, 1] = 3; maps[0, 0, 1, 2] = 2; maps[0, 0, 4, 5] = 1
        >>> found = peaks(maps, 3, min_distance=2)
        >>> found.coords[0].tolist(), found.values[0].tolist(), found.valid[0].tolist()
        ([[1, 1], [4, 5], [0, 0]], [3.0, 1.0, nan], [True, True, False])
    """
    return search_peaks(saliency, k, min_distance, spacing, block, TUNING)


def search_peaks(
    saliency: torch.Tensor,
    k: int,
    min_distance: float,
    spacing: Sequence[float] | None,
    block: int,
    tuning: Tuning,
) -> Peaks:
    """[`peaks`][normgrad.metrics.peaks] with the search cut as ``tuning`` says."""
    k = check_positive_int(k, "k")
    distance = check_number(min_distance, "min_distance", low=0)
    maps = as_maps(saliency)
    apart = Apart(distance, check_spacing(spacing, maps.ndim - 1))
    least = check_positive_int(block, "block")
    with deferred_checks() as checks:
        coords, values, valid = search(maps, k, apart.steps, distance > 0, least, tuning, checks)
    return Peaks(coords, values, valid)
