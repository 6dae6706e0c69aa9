r"""The peaks of a map: its highest local maxima, kept apart by non-maximum suppression."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_number, check_positive_int
from .._errors import InvalidArgumentError
from ._maps import as_maps

# Stretches searched per map in the first round (grown until k peaks are certain); the
# fewest candidate slots per map of the suppression; the least values per stretch (a piece
# of a line along the last axis: their maxima are a fast contiguous reduction, and a few of
# them hold the highest values of a map); and values per chunk of maps, so that temporaries
# are reused by the allocator instead of being mapped afresh (on the CPU the page faults of
# a fresh large buffer cost more than the work done in it).
_FIRST_STRETCHES = 128
_GROWTH = 4
_FIRST_CANDIDATES = 64
_STRETCH_ELEMENTS = 96
_CHUNK_ELEMENTS = 1 << 21


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


def _chunks(n: int, per_row: int) -> list[slice]:
    """Slices of ``n`` rows of ``per_row`` values, about ``_CHUNK_ELEMENTS`` values each."""
    step = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [slice(i, i + step) for i in range(0, n, step)]


def _stretch_maxima(maps: torch.Tensor, width: int) -> torch.Tensor:
    """The maximum of every stretch of ``width`` values along the last axis ``(N, S)``,
    stretches in row-major order (a contiguous reduction, at memory speed)."""
    n, size = maps.shape[0], math.prod(maps.shape[1:])
    out = maps.new_empty(n, size // width)
    for rows in _chunks(n, size):
        part = maps[rows]
        out[rows] = part.reshape(-1, width).amax(dim=1).view(part.shape[0], -1)
    return out


def _certain_candidates(
    maps: torch.Tensor,
    which: torch.Tensor,
    stretches: torch.Tensor,
    floor: torch.Tensor,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The local maxima above ``floor`` ``(n,)`` in the stretches ``stretches`` ``(n, S)``
    (flat indices, increasing along each row) of the maps ``which`` ``(n,)``: for each, its
    row in ``which``, its value and its pixel ``(·, ndim)``, by row, then row-major
    position.

    A stretch's values above the floor that are no lower than their neighbours along the
    stretch (its two ends always pass) are tested against their whole 3×3 (3×3×3)
    neighbourhood, read value by value with coordinates clamped at the border (a repeated
    border pixel changes no comparison).
    """
    spatial = maps.shape[1:]
    size = math.prod(spatial)
    per_map = size // width
    pieces = maps.reshape(-1, width)  # every stretch of every map, in order
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for rows in _chunks(which.numel(), stretches.shape[1] * width):
        index = (which[rows, None] * per_map + stretches[rows]).flatten()
        block = pieces.index_select(0, index).view(-1, stretches.shape[1], width)
        high = block > floor[rows].view(-1, 1, 1)
        if width > 2:  # no lower than the neighbours along the stretch
            inner = block[..., 1:-1]
            high[..., 1:-1] &= (inner >= block[..., :-2]) & (inner >= block[..., 2:])
        owner, slot, offset = high.nonzero(as_tuple=True)
        value = block[owner, slot, offset]
        position = stretches[rows][owner, slot] * width + offset
        owner = owner + (rows.start or 0)
        found.append(_local(maps, which[owner] * size, position, value, owner))
    owners, values, cells = zip(*found)  # temporaries of the neighbourhood: a chunk's
    return torch.cat(owners), torch.cat(values), torch.cat(cells)


def _local(
    maps: torch.Tensor,
    base: torch.Tensor,
    position: torch.Tensor,
    value: torch.Tensor,
    owner: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of the pixels ``position`` (of ``value``) of the maps starting at ``base`` (flat),
    those no lower than their whole neighbourhood: their ``owner``, value and pixel
    ``(·, ndim)``."""
    spatial = maps.shape[1:]
    cell = torch.stack(
        [(position // math.prod(spatial[a + 1 :])) % s for a, s in enumerate(spatial)], dim=1
    )
    flat = maps.reshape(-1)
    around = torch.zeros_like(position)[:, None]
    for axis, s in enumerate(spatial):
        at = (cell[:, axis, None] + torch.arange(-1, 2, device=maps.device)).clamp(0, s - 1)
        around = (around * s)[:, :, None] + at[:, None, :]
        around = around.flatten(1)
    local = (flat.take(base[:, None] + around) <= value[:, None]).all(dim=1)
    return owner[local], value[local], cell[local]


def _ordered(
    owner: torch.Tensor, value: torch.Tensor, cell: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates given by map, then row-major position, sorted by map, then decreasing
    value, then position (two stable sorts, last key first)."""
    order = value.argsort(descending=True, stable=True)
    order = order[owner[order].argsort(stable=True)]
    return owner[order], value[order], cell[order]


def _greedy(
    owner: torch.Tensor,
    value: torch.Tensor,
    cell: torch.Tensor,
    n: int,
    k: int,
    min_distance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy suppression over the ordered candidates of ``n`` maps: the first ``k`` kept
    of each, ``(n, k, ndim)`` pixels, ``(n, k)`` values and which slots hold one. The
    first ``max(64, 4k)`` candidates of each map are suppressed; where they hold fewer
    than ``k`` peaks and more candidates wait (a plateau: every pixel of it is one), four
    times as many, and so on. Maps are grouped by how many candidates they use
    (powers of two), so that no map pads to the longest list."""
    dev = value.device
    counts = torch.bincount(owner, minlength=n)
    rank = torch.arange(owner.numel(), device=dev) - (counts.cumsum(0) - counts)[owner]
    coords = torch.zeros(n, k, cell.shape[1], dtype=torch.long, device=dev)
    values = torch.full((n, k), float("nan"), dtype=value.dtype, device=dev)
    valid = torch.zeros(n, k, dtype=torch.bool, device=dev)
    pending = torch.ones(n, dtype=torch.bool, device=dev)
    limit = max(_FIRST_CANDIDATES, 4 * k)
    while True:
        used = counts.clamp(_FIRST_CANDIDATES, limit).double()
        group = torch.where(pending, torch.log2(used).ceil().long(), -1)
        for g in sorted(set(group.tolist()) - {-1}):
            maps = (group == g).nonzero()[:, 0]
            m = 1 << g
            slot = torch.full((n,), -1, dtype=torch.long, device=dev)
            slot[maps] = torch.arange(maps.numel(), device=dev)
            mine = (slot[owner] >= 0) & (rank < m)
            row, at = slot[owner[mine]], rank[mine]
            cells = torch.zeros(maps.numel(), m, cell.shape[1], dtype=torch.long, device=dev)
            usable = torch.zeros(maps.numel(), m, dtype=torch.bool, device=dev)
            picked = torch.zeros(maps.numel(), m, dtype=value.dtype, device=dev)
            cells[row, at], picked[row, at], usable[row, at] = cell[mine], value[mine], True
            kept = _suppress(cells, usable, k, min_distance)
            place = kept.long().cumsum(dim=1) - 1
            r, j = kept.nonzero(as_tuple=True)
            coords[maps], values[maps], valid[maps] = 0, float("nan"), False
            coords[maps[r], place[r, j]] = cells[r, j]
            values[maps[r], place[r, j]] = picked[r, j]
            valid[maps[r], place[r, j]] = True
        # fewer than k peaks in the first candidates, with more candidates to come
        pending &= (valid.sum(dim=1) < k) & (counts > limit)
        if not bool(pending.any()):
            return coords, values, valid
        limit *= 4


def _reach(min_distance: float) -> int:
    """The least integer squared distance ``d2`` whose distance ``sqrt(d2)`` (rounded as
    ``math.dist`` rounds it) is at least ``min_distance``: ``ceil(min_distance**2)`` can be
    one too many (``math.sqrt(2) ** 2 > 2``); capped beyond any map."""
    if min_distance > 2.0**31:
        return 1 << 62
    reach = math.ceil(min_distance * min_distance)
    while reach > 0 and math.sqrt(reach - 1) >= min_distance:
        reach -= 1
    while math.sqrt(reach) < min_distance:
        reach += 1
    return reach


def _suppress(
    coords: torch.Tensor, usable: torch.Tensor, k: int, min_distance: float
) -> torch.Tensor:
    """Greedy non-maximum suppression over ordered candidates ``(N, m, ndim)``: ``k`` picks
    of the first candidate not yet suppressed, each suppressing those closer than
    ``min_distance``. Returns which candidates are kept ``(N, m)``."""
    n, m, ndim = coords.shape
    reach = _reach(min_distance)
    kept = torch.zeros(n, m, dtype=torch.bool, device=coords.device)
    open_ = usable.clone()
    slots = torch.arange(m, device=coords.device)
    for _ in range(k):  # each pick: the first candidate still open, in order
        has = open_.any(dim=1)
        if not bool(has.any()):
            break
        pick = open_.to(torch.uint8).argmax(dim=1)  # 0 where nothing is open
        chosen = (slots == pick[:, None]) & has[:, None]
        kept |= chosen
        open_ &= ~chosen
        if min_distance > 0:  # distances from the pick only: k * m, not m * m
            at = coords.gather(1, pick.view(n, 1, 1).expand(n, 1, ndim))
            open_ &= (coords - at).square_().sum(dim=2) >= reach
    return kept


def peaks(
    saliency: torch.Tensor, k: int, *, min_distance: float = 1.0, block: int = _STRETCH_ELEMENTS
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

    Batched on the maps' device, reading each map once: each line along the last axis is
    cut into stretches (of at least ``block`` values) whose maxima are taken at memory
    speed; only the stretches with the highest maxima are searched for local maxima, and
    a local maximum is used only once every pixel as high is known to be in those
    stretches (above the highest maximum of the stretches left out). Those local maxima
    are suppressed greedily; the stretches grow for the maps where they were not enough,
    up to the whole map. Large temporaries are made a few maps at a time.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN
            or +inf (-inf ranks below everything).
        k: how many peaks per map, ``>= 1``.
        min_distance: smallest distance between two peaks in pixels, ``>= 0`` (1 or less
            keeps every local maximum, including the pixels of a plateau).
        block: least values per stretch of the search (a tuning knob; the result does not
            depend on it).

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
    work = (maps if maps.is_floating_point() else maps.to(torch.float64)).contiguous()
    last = spatial[-1]
    wide = min(check_positive_int(block, "block"), last)
    width = min(d for d in range(wide, last + 1) if last % d == 0)
    high = _stretch_maxima(work, width)
    count = high.shape[1]
    wrong = high.isnan() | (high == math.inf)  # NaN spreads to the maximum; -inf is fine
    if bool(wrong.any()):
        bad = int(wrong.any(dim=1).sum())
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN or +inf, got them in {bad} map(s); "
            "replace them (torch.nan_to_num) before looking for peaks"
        )
    dev = maps.device
    coords = torch.zeros(n, k, len(spatial), dtype=torch.long, device=dev)
    values = torch.full((n, k), float("nan"), dtype=work.dtype, device=dev)
    valid = torch.zeros(n, k, dtype=torch.bool, device=dev)
    todo = torch.arange(n, device=dev)
    t = min(count, max(_FIRST_STRETCHES, 4 * k))
    while todo.numel():
        # the t stretches with the highest maxima hold every pixel above the highest
        # maximum left out: greedy suppression over those local maxima ("certain") is
        # exact, and they are above the map's minimum (a stretch left out is as low)
        top = high[todo].topk(min(t + 1, count), dim=1)
        # with every stretch, only the minimum itself is left out
        floor = top.values[:, t] if t < count else work[todo].flatten(1).amin(dim=1)
        chosen = top.indices[:, :t].sort(dim=1).values  # candidates come in row-major order
        owner, value, cell = _certain_candidates(work, todo, chosen, floor, width)
        found = _greedy(*_ordered(owner, value, cell), todo.numel(), k, distance)
        # done: k peaks, or every pixel searched; otherwise more stretches
        done = (found[2].sum(dim=1) == k) | (t == count)
        coords[todo[done]], values[todo[done]], valid[todo[done]] = (f[done] for f in found)
        todo = todo[~done]
        t = min(count, _GROWTH * t)
    return Peaks(coords, values, valid)
