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
_FIRST_STRETCHES = 96
_GROWTH = 4
_FIRST_CANDIDATES = 64
_STRETCH_ELEMENTS = 96
_CHUNK_ELEMENTS = 1 << 21


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


def _chunks(n: int, per_row: int) -> list[slice]:
    """Slices of ``n`` rows of ``per_row`` values, about ``_CHUNK_ELEMENTS`` values each."""
    step = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [slice(i, i + step) for i in range(0, n, step)]


def _stretch_maxima(maps: torch.Tensor, width: int) -> torch.Tensor:
    """The maximum of every stretch of ``width`` values along the last axis ``(N, S)``,
    stretches in row-major order (a contiguous reduction, at memory speed; its output is
    small, so one call)."""
    stretches = math.prod(maps.shape[1:]) // width
    return maps.reshape(-1, width).amax(dim=1).view(maps.shape[0], stretches)


def _certain_candidates(
    maps: torch.Tensor,
    which: torch.Tensor,
    stretches: torch.Tensor,
    floor: torch.Tensor,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The local maxima above ``floor`` ``(n,)`` in the stretches ``stretches`` ``(n, S)``
    (flat indices, increasing along each row) of the maps ``which`` ``(n,)``: for each, its
    row in ``which``, its value and its pixel ``(ndim, ·)``, by row, then row-major
    position.

    A stretch's values above the floor that are no lower than their two neighbours along
    the line (those of the ends read beside the stretch, or the end itself at the map's
    border) are tested against the rest of their 3×3 (3×3×3) neighbourhood.
    """
    spatial = maps.shape[1:]
    per_map, per_line = math.prod(spatial) // width, spatial[-1] // width
    t = stretches.shape[1]
    pieces, flat = maps.reshape(-1, width), maps.reshape(-1)
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for rows in _chunks(which.numel(), t * width):
        index = (which[rows, None] * per_map + stretches[rows]).flatten()  # of all stretches
        block = pieces.index_select(0, index)
        start, column = index * width, stretches[rows].flatten() % per_line
        before = flat.take(start - (column > 0).long())  # the end itself at the border
        after = flat.take(start + width - 1 + (column < per_line - 1).long())
        bar = torch.empty_like(block)
        if width > 1:
            torch.maximum(block[:, :-2], block[:, 2:], out=bar[:, 1:-1])
            torch.maximum(before, block[:, 1], out=bar[:, 0])
            torch.maximum(after, block[:, -2], out=bar[:, -1])
        else:
            torch.maximum(before, after, out=bar[:, 0])
        # values no lower than the bar pass: the higher neighbour, or the floor (those
        # equal to the floor are dropped once they are few)
        bar.view(-1, t, width).clamp_(min=floor[rows].view(-1, 1, 1))
        at = (block >= bar).view(-1).nonzero().squeeze(1)
        value, piece = block.view(-1)[at], at // width
        above = value > floor[rows][piece // t]
        at, value, piece = at[above], value[above], piece[above]
        position = start[piece] + (at - piece * width)  # flat, over all maps
        owner = piece // t + (rows.start or 0)
        found.append(_local(maps, position, value, owner))
    owners, values, cells = zip(*found)  # temporaries of the neighbourhood: a chunk's
    return torch.cat(owners), torch.cat(values), torch.cat(cells, dim=1)


def _local(
    maps: torch.Tensor, position: torch.Tensor, value: torch.Tensor, owner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of the pixels ``position`` (flat over all maps, of ``value``), already no lower
    than their neighbours along the last axis, those no lower than the rest of their
    neighbourhood (a neighbour beyond the border is the pixel itself): their ``owner``,
    value and pixel ``(ndim, ·)``. The pixels straight beside in the other lines are read
    first, the diagonal ones only for those that pass."""
    spatial = maps.shape[1:]
    strides = [math.prod(spatial[a + 1 :]) for a in range(len(spatial))]
    cell = torch.stack([(position // st) % s for st, s in zip(strides, spatial)])
    if len(spatial) > 1:
        flat = maps.reshape(-1)
        # the lines around: every combination of -1, 0, +1 steps over the other axes
        lines = [torch.zeros_like(position)]
        for axis in range(len(spatial) - 1):
            low = (cell[axis] > 0).long() * -strides[axis]
            high = (cell[axis] < spatial[axis] - 1).long() * strides[axis]
            lines = [x for line in lines for x in (line + low, line, line + high)]
        del lines[len(lines) // 2]  # the pixel's own line, tested already
        straight = position + torch.stack(lines)
        keep = (flat.take(straight) <= value).all(dim=0)
        straight, value, owner, cell = straight[:, keep], value[keep], owner[keep], cell[:, keep]
        left = (cell[-1] > 0).long()
        right = (cell[-1] < spatial[-1] - 1).long()
        keep = (flat.take(torch.cat([straight - left, straight + right])) <= value).all(dim=0)
        value, owner, cell = value[keep], owner[keep], cell[:, keep]
    return owner, value, cell


def _ordered(
    owner: torch.Tensor, value: torch.Tensor, cell: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates given by map, then row-major position, sorted by map, then decreasing
    value, then position (two stable sorts, last key first)."""
    order = value.argsort(descending=True, stable=True)
    order = order[owner[order].argsort(stable=True)]
    return owner[order], value[order], cell[:, order]


def _greedy(
    owner: torch.Tensor,
    value: torch.Tensor,
    cell: torch.Tensor,
    n: int,
    k: int,
    min_distance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy suppression over the ordered candidates of ``n`` maps (pixels ``(ndim, ·)``):
    the first ``k`` kept of each, ``(n, k, ndim)`` pixels, ``(n, k)`` values and which
    slots hold one. The first ``max(64, 4k)`` candidates of each map are suppressed; where
    they hold fewer than ``k`` peaks and more candidates wait (a plateau: every pixel of
    it is one), four times as many, and so on. Maps are grouped by how many candidates
    they use (powers of two), so that no map pads to the longest list."""
    dev, ndim = value.device, cell.shape[0]
    counts = torch.bincount(owner, minlength=n)
    starts = counts.cumsum(0) - counts  # each map's candidates are together
    coords = torch.zeros(n, k, ndim, dtype=torch.long, device=dev)
    values = torch.full((n, k), float("nan"), dtype=value.dtype, device=dev)
    valid = torch.zeros(n, k, dtype=torch.bool, device=dev)
    pending = torch.ones(n, dtype=torch.bool, device=dev)
    limit = max(_FIRST_CANDIDATES, 4 * k)
    while owner.numel():
        used = counts.clamp(_FIRST_CANDIDATES, limit).double()
        group = torch.where(pending, torch.log2(used).ceil().long(), -1)
        for g in sorted(set(group.tolist()) - {-1}):
            maps = (group == g).nonzero()[:, 0]
            slots = torch.arange(1 << g, device=dev)
            usable = slots < counts[maps, None]
            at = (starts[maps, None] + slots).clamp_(max=owner.numel() - 1)
            cells = cell[:, at]
            picks, has = _suppress(cells, usable, k, min_distance)
            at = at.gather(1, picks)
            kept = cells.gather(2, picks.expand(ndim, -1, -1)).permute(1, 2, 0)
            coords[maps] = kept * has[:, :, None]
            values[maps] = torch.where(has, value[at], math.nan)
            valid[maps] = has
        # fewer than k peaks in the first candidates, with more candidates to come
        pending &= (valid.sum(dim=1) < k) & (counts > limit)
        if not bool(pending.any()):
            break
        limit *= 4
    return coords, values, valid


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
    cells: torch.Tensor, usable: torch.Tensor, k: int, min_distance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy non-maximum suppression over ordered candidates, pixels ``(ndim, N, m)``:
    ``k`` picks of the first candidate not yet suppressed, each suppressing those closer
    than ``min_distance``. Returns the picks in order ``(N, k)`` and which are real
    ``(N, k)`` (a map can run out of candidates)."""
    ndim, n, _ = cells.shape
    reach = _reach(min_distance)
    open_ = usable.clone()
    picks = torch.zeros(n, k, dtype=torch.long, device=cells.device)
    has = torch.zeros(n, k, dtype=torch.bool, device=cells.device)
    for i in range(k):  # each pick: the first candidate still open, in order
        some = open_.any(dim=1)
        if not bool(some.any()):
            break
        pick = open_.to(torch.uint8).argmax(dim=1, keepdim=True)  # 0 where none is open
        picks[:, i : i + 1], has[:, i] = pick, some
        open_.scatter_(1, pick, False)
        if reach > 0:  # distances from the pick only: k * m, not m * m
            at = cells.gather(2, pick.expand(ndim, n, 1))
            near = cells - at
            open_ &= near.mul_(near).sum(dim=0) >= reach
    return picks, has


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
        >>> import torch
        >>> from normgrad.metrics import peaks
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
        if t < count:
            floor = top.values[:, t]
        else:  # all maps without a copy (small maps: the first round), or the few left
            floor = (work if todo.numel() == n else work[todo]).flatten(1).amin(dim=1)
        chosen = top.indices[:, :t].sort(dim=1).values  # candidates come in row-major order
        owner, value, cell = _certain_candidates(work, todo, chosen, floor, width)
        found = _greedy(*_ordered(owner, value, cell), todo.numel(), k, distance)
        # done: k peaks, or every pixel searched; otherwise more stretches
        done = (found[2].sum(dim=1) == k) | (t == count)
        coords[todo[done]], values[todo[done]], valid[todo[done]] = (f[done] for f in found)
        todo = todo[~done]
        t = min(count, _GROWTH * t)
    return Peaks(coords, values, valid)
