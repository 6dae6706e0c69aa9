r"""The peaks of a map: its highest local maxima, kept apart by non-maximum suppression."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_number, check_positive_int
from .._errors import InvalidArgumentError
from ._maps import as_maps

# Candidates examined per map in the first round, and bands of about _BAND_ELEMENTS values
# searched (both doubled until k peaks are certain).
_FIRST_CANDIDATES = 64
_FIRST_BANDS = 8
_BAND_ELEMENTS = 4096


@dataclass(frozen=True)
class Peaks:
    """The detections of a batch of maps, best first (made by :func:`peaks`)."""

    coords: torch.Tensor
    """int64 ``(N, k, ndim)``: each peak's pixel in array order ``(y, x)`` / ``(z, y, x)``;
    zeros where ``valid`` is False."""
    values: torch.Tensor
    """``(N, k)``: the map's value at each peak, non-increasing; NaN where not ``valid``."""
    valid: torch.Tensor
    """bool ``(N, k)``: False for the slots of a map with fewer than ``k`` peaks (always at
    the end)."""

    @property
    def counts(self) -> torch.Tensor:
        """How many peaks each map has ``(N,)``."""
        return self.valid.sum(dim=1)


def _band_rows(first: int, rest: int, block: int) -> int:
    """Rows (first-axis indices) per band: the largest divisor of ``first`` whose band holds
    at most ``max(block, rest)`` values."""
    for rows in range(first, 0, -1):
        if first % rows == 0 and rows * rest <= max(block, rest):
            return rows
    return 1


def _band_candidates(
    maps: torch.Tensor, bands: torch.Tensor, rows: int, above: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values, local-maximum flags and flat positions of the pixels of chosen bands.

    ``bands`` ``(n, T)`` holds band indices in increasing order, so the pixels come in
    row-major order; each band is read with one row above and below (clamped at the border:
    a repeated border row changes no comparison) to test its 3×3 (3×3×3) neighbourhoods.
    ``above`` ``(n,)``: only pixels strictly above it count.
    """
    n, t = bands.shape
    first, *rest = maps.shape[1:]
    offsets = torch.arange(-1, rows + 1, device=maps.device)
    index = (bands[..., None] * rows + offsets).clamp(0, first - 1)  # (n, T, rows + 2)
    slab = maps[torch.arange(n, device=maps.device)[:, None, None], index]
    slab = slab.reshape(n * t, 1, rows + 2, *rest)
    pool = F.max_pool2d if len(rest) == 1 else F.max_pool3d
    padding = (0, *([1] * len(rest)))
    neighbourhood = pool(slab, kernel_size=3, stride=1, padding=padding)
    inner = slab[:, :, 1:-1]
    local = (inner >= neighbourhood) & (
        inner > above.repeat_interleave(t).view(-1, 1, 1, *([1] * len(rest)))
    )
    size = rows * math.prod(rest)
    positions = (bands * size)[..., None] + torch.arange(size, device=maps.device)
    return inner.reshape(n, t * size), local.reshape(n, t * size), positions.reshape(n, t * size)


def _ordered_candidates(
    values: torch.Tensor, candidate: torch.Tensor, m: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``m`` candidates of each row by value, ties in row-major order.

    Returns flat positions ``(N, m)``, values ``(N, m)`` and whether each is a candidate.
    """
    n = values.shape[0]
    masked = torch.where(candidate, values, torch.full_like(values, -torch.inf))
    threshold = masked.topk(m, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = masked > threshold
    tied = masked == threshold
    room = m - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(dim=1) <= room))
    positions = chosen.nonzero()[:, 1].view(n, m)  # row-major within each row
    picked = masked.gather(1, positions)
    order = picked.argsort(dim=1, descending=True, stable=True)
    positions = positions.gather(1, order)
    return positions, values.gather(1, positions), candidate.gather(1, positions)


def _suppress(
    coords: torch.Tensor, usable: torch.Tensor, k: int, min_distance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy non-maximum suppression over ordered candidates ``(N, m, ndim)``.

    Returns which candidates are kept ``(N, m)`` and whether the order was long enough to be
    sure of the result (k kept, or no candidate left unexamined).
    """
    n, m, _ = coords.shape
    c = coords.to(torch.float64)
    close = torch.cdist(c, c) < min_distance if min_distance > 0 else None
    kept = torch.zeros(n, m, dtype=torch.bool, device=coords.device)
    count = torch.zeros(n, dtype=torch.long, device=coords.device)
    for j in range(m):
        keep = usable[:, j] & (count < k)
        if close is not None and j:
            keep &= ~(close[:, j, :j] & kept[:, :j]).any(dim=1)
        kept[:, j] = keep
        count += keep.long()
    return kept, count


def peaks(
    saliency: torch.Tensor, k: int, *, min_distance: float = 1.0, block: int = _BAND_ELEMENTS
) -> Peaks:
    r"""The ``k`` highest local maxima of each map, at least ``min_distance`` apart.

    A pixel is a *local maximum* when no pixel of its 3×3 (3×3×3) neighbourhood is higher
    and it is above the map's minimum: every pixel of a flat-topped maximum is one, a flat
    background at the minimum is not, and a constant map has none. Local maxima are taken
    in order of decreasing value, ties in row-major order (as the Pointing Game's point),
    and each is kept when its Euclidean distance to every peak kept before is at least
    ``min_distance`` pixels (greedy non-maximum suppression), until ``k`` are kept. The first
    peak is therefore the Pointing Game's point (:func:`points`) unless the map is constant.

    Batched on the maps' device, in about one read of the maps: each map is cut into bands
    of whole rows (about 4,096 values) whose minima and maxima are taken at memory speed;
    only the bands with the highest maxima are searched for local maxima (3×3 max-pooling
    of the band with a row above and below), and a local maximum is used only once every
    pixel as high is known to be in those bands (above the highest maximum of the bands
    left out). The best ``m`` of them (threshold by ``topk``, ties resolved in row-major
    order) are suppressed greedily; bands and ``m`` are doubled for the maps where they
    were not enough, up to the whole map.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, finite values.
        k: how many peaks per map, ``>= 1``.
        min_distance: smallest distance between two peaks in pixels, ``>= 0`` (1 or less
            keeps every local maximum, including the pixels of a plateau).
        block: values per band of the search (a tuning knob; the result does not depend
            on it).

    Returns:
        :class:`Peaks` with ``coords`` ``(N, k, ndim)``, ``values`` ``(N, k)`` and ``valid``.

    Example:
        >>> maps = torch.zeros(1, 1, 5, 6)
        >>> maps[0, 0, 1, 1] = 3; maps[0, 0, 1, 2] = 2; maps[0, 0, 4, 5] = 1
        >>> found = peaks(maps, 3, min_distance=2)
        >>> found.coords[0].tolist(), found.values[0].tolist(), found.valid[0].tolist()
        ([[1, 1], [4, 5], [0, 0]], [3.0, 1.0, nan], [True, True, False])
    """
    k = check_positive_int(k, "k")
    distance = check_number(min_distance, "min_distance", low=0)
    maps = as_maps(saliency)
    if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
        bad = int((~torch.isfinite(maps)).flatten(1).any(dim=1).sum())
        raise InvalidArgumentError(
            f"saliency: expected finite maps, got NaN or infinite values in {bad} map(s); "
            "replace them (torch.nan_to_num) before looking for peaks"
        )
    n, *spatial = maps.shape
    work = maps if maps.is_floating_point() else maps.to(torch.float64)
    first, rest = spatial[0], math.prod(spatial[1:])
    rows = _band_rows(first, rest, check_positive_int(block, "block"))
    count_bands = first // rows
    low, high = torch.aminmax(work.reshape(n, count_bands, rows * rest), dim=2)
    if not bool((torch.isfinite(low) & torch.isfinite(high)).all()):  # NaN reaches both
        bad = int((~(torch.isfinite(low) & torch.isfinite(high))).any(dim=1).sum())
        raise InvalidArgumentError(
            f"saliency: expected finite maps, got NaN or infinite values in {bad} map(s); "
            "replace them (torch.nan_to_num) before looking for peaks"
        )
    lowest = low.amin(dim=1)
    strides = torch.tensor(
        [math.prod(spatial[i + 1 :]) for i in range(len(spatial))], device=maps.device
    )
    sizes = torch.tensor(spatial, device=maps.device)
    coords = torch.zeros(n, k, len(spatial), dtype=torch.long, device=maps.device)
    values = torch.full((n, k), float("nan"), dtype=work.dtype, device=maps.device)
    valid = torch.zeros(n, k, dtype=torch.bool, device=maps.device)
    todo = torch.arange(n, device=maps.device)
    t = min(count_bands, _FIRST_BANDS)
    m = max(_FIRST_CANDIDATES, 4 * k)
    while todo.numel():
        # the t bands with the highest maxima; every pixel above the highest maximum left
        # out ("certain") is in them, so greedy suppression over those is exact
        top = high[todo].topk(min(t + 1, count_bands), dim=1)
        chosen = top.indices[:, :t].sort(dim=1).values
        left_out = top.values[:, t] if t < count_bands else torch.full_like(lowest[todo], -math.inf)
        sub, local, where = _band_candidates(work[todo], chosen, rows, lowest[todo])
        certain = local & (sub > left_out[:, None])
        size = min(m, sub.shape[1])
        order, picked, usable = _ordered_candidates(sub, certain, size)
        positions = where.gather(1, order)
        cells = (positions[..., None] // strides) % sizes
        kept, count = _suppress(cells, usable, k, distance)
        exhausted = ~usable[:, -1] | (size == sub.shape[1])
        done = (count == k) | (exhausted & (t == count_bands))
        rows_done = todo[done]
        slot = kept[done].long().cumsum(dim=1) - 1
        r, j = kept[done].nonzero(as_tuple=True)
        coords[rows_done[r], slot[r, j]] = cells[done][r, j]
        values[rows_done[r], slot[r, j]] = picked[done][r, j]
        valid[rows_done[r], slot[r, j]] = True
        todo = todo[~done]
        t, m = min(count_bands, 2 * t), 2 * m
    return Peaks(coords, values, valid)
