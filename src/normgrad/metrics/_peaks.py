r"""The peaks of a map: its highest local maxima, kept apart by non-maximum suppression."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_number, check_positive_int
from .._errors import InvalidArgumentError
from ._maps import as_maps

# Candidates examined per map in the first round, and tiles of about _TILE_ELEMENTS values
# searched (both grown until k peaks are certain).
_FIRST_CANDIDATES = 64
_FIRST_TILES = 16
_TILE_ELEMENTS = 256


@dataclass(frozen=True)
class Peaks:
    """The detections of a batch of maps, best first (made by [`peaks`][normgrad.metrics.peaks])."""

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


def _tile_shape(spatial: Sequence[int], block: int) -> tuple[int, ...]:
    """Tile side per axis: the largest divisor of the size up to ``block ** (1 / ndim)``."""
    side = max(1, round(block ** (1 / len(spatial))))
    return tuple(max(d for d in range(1, min(s, side) + 1) if s % d == 0) for s in spatial)


def _tile_candidates(
    maps: torch.Tensor, which: torch.Tensor, tiles: torch.Tensor, tile: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values, local-maximum flags and flat positions of the pixels of chosen tiles.

    ``tiles`` ``(n, T)``: flat tile indices of the maps ``which`` ``(n,)``. Each tile is read
    with a margin of one pixel (clamped at the border: a repeated border pixel changes no
    comparison) and compared with the maximum of its 3×3 (3×3×3) neighbourhoods, separable
    running maxima of three.
    """
    n, t = tiles.shape
    spatial = maps.shape[1:]
    grid = [s // d for s, d in zip(spatial, tile)]
    length = math.prod(spatial)
    # one flat index per read value: a single-index gather is much faster than n-D indexing
    index = (which * length).view(n, 1, *([1] * len(spatial)))
    flat = torch.zeros(n, t, *tile, dtype=torch.long, device=maps.device)
    rest = tiles
    for axis in reversed(range(len(spatial))):
        place = rest % grid[axis]
        rest = rest // grid[axis]
        shape = [n, t] + [1] * len(spatial)
        shape[2 + axis] = tile[axis] + 2
        offsets = torch.arange(-1, tile[axis] + 1, device=maps.device)
        at = (place[..., None] * tile[axis] + offsets).clamp(0, spatial[axis] - 1)
        stride = math.prod(spatial[axis + 1 :])
        index = index + at.view(shape) * stride
        inner = shape.copy()
        inner[2 + axis] = tile[axis]
        flat = flat + (place[..., None] * tile[axis] + offsets[1:-1]).view(inner) * stride
    slab = maps.reshape(-1).take(index)  # (n, T, *tile + 2)
    top = slab
    centre = slab
    for axis in range(2, slab.ndim):
        length = top.shape[axis]
        top = torch.maximum(
            torch.maximum(top.narrow(axis, 0, length - 2), top.narrow(axis, 1, length - 2)),
            top.narrow(axis, 2, length - 2),
        )
        centre = centre.narrow(axis, 1, length - 2)
    return centre.reshape(n, -1), (centre >= top).reshape(n, -1), flat.reshape(n, -1)


def _ordered_candidates(
    values: torch.Tensor, candidate: torch.Tensor, positions: torch.Tensor, m: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``m`` candidates of each row by decreasing value, ties by position.

    Returns indices into the rows ``(N, m)``, in that order, their values and whether each
    is a candidate.
    """
    n = values.shape[0]
    masked = torch.where(candidate, values, torch.full_like(values, -torch.inf))
    threshold = masked.topk(m, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = masked > threshold
    tied = masked == threshold
    room = m - above.sum(dim=1, keepdim=True)
    chosen = above | tied
    if bool((tied.sum(dim=1, keepdim=True) > room).any()):  # ties straddle the m-th place
        last = int(positions.max()) + 1
        tied_at = torch.where(tied, positions, torch.full_like(positions, last))
        firsts = tied_at.topk(int(room.max().clamp_min(1)), dim=1, largest=False).values
        cut = firsts.gather(1, (room - 1).clamp_min(0))
        chosen = above | (tied & (positions <= cut) & (room > 0))
    index = chosen.nonzero()[:, 1].view(n, m)
    index = index.gather(1, positions.gather(1, index).argsort(dim=1))
    order = masked.gather(1, index).argsort(dim=1, descending=True, stable=True)
    index = index.gather(1, order)
    return index, values.gather(1, index), candidate.gather(1, index)


def _suppress(
    coords: torch.Tensor, usable: torch.Tensor, k: int, min_distance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy non-maximum suppression over ordered candidates ``(N, m, ndim)``: ``k`` picks
    of the first candidate not yet suppressed, each suppressing those closer than
    ``min_distance``. Returns which candidates are kept ``(N, m)`` and how many ``(N,)``."""
    n, m, _ = coords.shape
    c = coords.to(torch.float64)
    kept = torch.zeros(n, m, dtype=torch.bool, device=coords.device)
    count = torch.zeros(n, dtype=torch.long, device=coords.device)
    open_ = usable.clone()
    rows = torch.arange(n, device=coords.device)
    for _ in range(k):  # each pick: the first candidate still open, in order
        has = open_.any(dim=1)
        if not bool(has.any()):
            break
        pick = open_.to(torch.uint8).argmax(dim=1)
        r, j = rows[has], pick[has]
        kept[r, j] = True
        open_[r, j] = False
        if min_distance > 0:  # distances from the pick only: k * m, not m * m
            d2 = ((c[r] - c[r, j][:, None]) ** 2).sum(dim=2)
            open_[r] &= d2 >= min_distance**2
        count += has.long()
    return kept, count


def peaks(
    saliency: torch.Tensor, k: int, *, min_distance: float = 1.0, block: int = _TILE_ELEMENTS
) -> Peaks:
    r"""The ``k`` highest local maxima of each map, at least ``min_distance`` apart.

    A pixel is a *local maximum* when no pixel of its 3×3 (3×3×3) neighbourhood is higher
    and it is above the map's minimum: every pixel of a flat-topped maximum is one, a flat
    background at the minimum is not, and a constant map has none. Local maxima are taken
    in order of decreasing value, ties in row-major order (as the Pointing Game's point),
    and each is kept when its Euclidean distance to every peak kept before is at least
    ``min_distance`` pixels (greedy non-maximum suppression), until ``k`` are kept. The first
    peak is therefore the Pointing Game's point ([`points`][normgrad.metrics.points]) unless the
    map is constant.

    Batched on the maps' device, reading each map once: each map is cut into tiles
    (about ``block`` values) whose maxima are taken at memory speed; only the tiles with
    the highest maxima are searched for local maxima (running maxima over the tile and a
    margin of one pixel), and a local maximum is used only once every pixel as high is
    known to be in those tiles (above the highest maximum of the tiles left out). The best
    ``m`` of them (threshold by ``topk``, ties resolved in row-major order) are suppressed
    greedily; tiles and ``m`` grow for the maps where they were not enough, up to the
    whole map.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN
            or +inf (-inf ranks below everything).
        k: how many peaks per map, ``>= 1``.
        min_distance: smallest distance between two peaks in pixels, ``>= 0`` (1 or less
            keeps every local maximum, including the pixels of a plateau).
        block: values per tile of the search (a tuning knob; the result does not depend
            on it).

    Returns:
        [`Peaks`][normgrad.metrics.Peaks] with ``coords`` ``(N, k, ndim)``, ``values`` ``(N, k)``
        and ``valid``.

    Examples:
        >>> maps = torch.zeros(1, 1, 5, 6)
        >>> maps[0, 0, 1, 1] = 3; maps[0, 0, 1, 2] = 2; maps[0, 0, 4, 5] = 1
        >>> found = peaks(maps, 3, min_distance=2)
        >>> found.coords[0].tolist(), found.values[0].tolist(), found.valid[0].tolist()
        ([[1, 1], [4, 5], [0, 0]], [3.0, 1.0, nan], [True, True, False])
    """
    k = check_positive_int(k, "k")
    distance = check_number(min_distance, "min_distance", low=0)
    maps = as_maps(saliency)
    n, *spatial = maps.shape
    work = maps if maps.is_floating_point() else maps.to(torch.float64)
    tile = _tile_shape(spatial, check_positive_int(block, "block"))
    grid = [s // d for s, d in zip(spatial, tile)]
    count_tiles = math.prod(grid)
    high = work
    for axis in range(len(spatial)):  # outer axes first: reductions over contiguous rows
        shape = list(high.shape)
        shape[1 + axis : 2 + axis] = [grid[axis], tile[axis]]
        high = high.reshape(shape).amax(dim=2 + axis)
    high = high.reshape(n, count_tiles)
    if not bool(torch.isfinite(high).all()):  # NaN spreads to the maximum
        bad = int((~torch.isfinite(high)).any(dim=1).sum())
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN or +inf, got them in {bad} map(s); "
            "replace them (torch.nan_to_num) before looking for peaks"
        )
    strides = torch.tensor(
        [math.prod(spatial[i + 1 :]) for i in range(len(spatial))], device=maps.device
    )
    sizes = torch.tensor(spatial, device=maps.device)
    coords = torch.zeros(n, k, len(spatial), dtype=torch.long, device=maps.device)
    values = torch.full((n, k), float("nan"), dtype=work.dtype, device=maps.device)
    valid = torch.zeros(n, k, dtype=torch.bool, device=maps.device)
    todo = torch.arange(n, device=maps.device)
    t = min(count_tiles, max(_FIRST_TILES, 2 * k))
    m = max(_FIRST_CANDIDATES, 4 * k)
    while todo.numel():
        # the t tiles with the highest maxima hold every pixel above the highest maximum
        # left out: greedy suppression over those local maxima ("certain") is exact, and
        # they are above the map's minimum (a tile left out has a value at least as low)
        top = high[todo].topk(min(t + 1, count_tiles), dim=1)
        # with every tile, only the minimum itself is left out
        floor = top.values[:, t] if t < count_tiles else work[todo].flatten(1).amin(dim=1)
        sub, local, where = _tile_candidates(work, todo, top.indices[:, :t], tile)
        certain = local & (sub > floor[:, None])
        size = min(m, sub.shape[1])
        order, picked, usable = _ordered_candidates(sub, certain, where, size)
        positions = where.gather(1, order)
        cells = (positions[..., None] // strides) % sizes
        kept, count = _suppress(cells, usable, k, distance)
        exhausted = ~usable[:, -1] | (size == sub.shape[1])
        done = (count == k) | (exhausted & (t == count_tiles))
        rows_done = todo[done]
        slot = kept[done].long().cumsum(dim=1) - 1
        r, j = kept[done].nonzero(as_tuple=True)
        coords[rows_done[r], slot[r, j]] = cells[done][r, j]
        values[rows_done[r], slot[r, j]] = picked[done][r, j]
        valid[rows_done[r], slot[r, j]] = True
        # more tiles where their certain candidates ran out, more candidates elsewhere
        more_tiles = bool((exhausted & ~done).any())
        more_candidates = bool((~exhausted & ~done).any())
        todo = todo[~done]
        t = min(count_tiles, 4 * t) if more_tiles else t
        m = 2 * m if more_candidates else m
    return Peaks(coords, values, valid)
