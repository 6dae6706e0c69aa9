"""The fast search for [`peaks`][normgrad.metrics.peaks]: the same peaks as the definition
(``peaks_by_definition``), found while reading each map about once.

Each line of a map along its last axis is cut into *stretches* whose maxima are taken at
memory speed. A *round* searches the stretches with the highest maxima: every pixel
above the highest maximum of the stretches left out (the round's *floor*) lies in them,
so the local maxima above the floor are all the map's, and greedy suppression over them,
in order, keeps the same peaks as over every local maximum, until it reaches the floor.
A map with ``k`` peaks kept is done; the others are searched again with more stretches
(up to all of them, where the floor is the map's minimum).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._deferred import Deferred
from .._errors import InvalidArgumentError
from .._transfer import to_device

Rule = Callable[[torch.Tensor], torch.Tensor]
"""Whether pixel steps ``(ndim, ...)`` are far enough apart (``Apart.steps``)."""


@dataclass(frozen=True)
class Tuning:
    """How the fast search cuts its work; the peaks never depend on it (the tests shrink
    every number to reach each branch)."""

    first_stretches: int = 96
    """Stretches searched per map in the first round (at least ``4 k``)."""
    growth: int = 4
    """How many times more stretches each next round searches, and more candidates each
    next pass of the suppression takes."""
    first_candidates: int = 64
    """The fewest candidates per map a pass of the suppression takes (at least ``4 k``):
    few enough to suppress at once, enough to hold ``k`` peaks but on a plateau."""
    chunk_elements: int = 1 << 21
    """Values of the searched stretches per chunk of maps: temporaries are reused by the
    allocator instead of being mapped afresh (on the CPU the page faults of a fresh large
    buffer cost more than the work done in it)."""


TUNING = Tuning()


def refuse_non_finite(bad: list[float]) -> None:
    """Refuse maps with NaN or +inf, from a flag per map."""
    count = sum(1 for flag in bad if flag)
    if count:
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN or +inf, got them in {count} map(s); "
            "replace them (torch.nan_to_num) before looking for peaks"
        )


def stretch_width(line: int, least: int) -> int:
    """The width of a stretch: the smallest divisor of a ``line``'s length that is at least
    ``least`` (or the line): no stretch crosses two lines."""
    wide = min(least, line)
    return min(d for d in range(wide, line + 1) if line % d == 0)


def search(
    maps: torch.Tensor,
    k: int,
    apart: Rule,
    suppresses: bool,
    least: int,
    tuning: Tuning,
    checks: Deferred,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The peaks of maps ``(N, *spatial)``: pixels ``(N, k, ndim)``, values ``(N, k)`` and
    which slots hold one; ``apart`` says which steps are far enough (``suppresses``: some
    are not), stretches have at least ``least`` values; NaN and +inf are refused by
    ``checks``."""
    n, *spatial = maps.shape
    values = (maps if maps.is_floating_point() else maps.to(torch.float64)).contiguous()
    width = stretch_width(spatial[-1], least)
    stretches = math.prod(spatial) // width
    highest = values.reshape(-1, width).amax(dim=1).view(n, stretches)  # each stretch's
    checks.add((highest.isnan() | (highest == math.inf)).any(dim=1), refuse_non_finite)
    coords = torch.zeros(n, k, len(spatial), dtype=torch.long, device=maps.device)
    found = torch.full((n, k), math.nan, dtype=values.dtype, device=maps.device)
    valid = torch.zeros(n, k, dtype=torch.bool, device=maps.device)
    pending = list(range(n))  # the maps whose peaks are not yet certain
    searched = min(stretches, max(tuning.first_stretches, 4 * k))
    while pending:
        rows = to_device(pending, maps.device)
        top = highest[rows].topk(min(searched + 1, stretches), dim=1)
        if searched < stretches:
            floor = top.values[:, searched]
        else:  # every stretch: the floor is the minimum (without a copy in a first round)
            floor = (values if len(pending) == n else values[rows]).flatten(1).amin(dim=1)
        chosen = top.indices[:, :searched].sort(dim=1).values  # in row-major order
        owner, value, cell, local = _candidates(values, rows, chosen, floor, width, tuning)
        candidates = (owner, value, cell, local)
        this_round, kept = _suppressed(*candidates, len(pending), k, apart, suppresses, tuning)
        done = [i for i, count in enumerate(kept) if count == k or searched == stretches]
        if done:
            at = to_device(done, maps.device)
            where = rows[at]
            coords[where], found[where], valid[where] = (part[at] for part in this_round)
        finished = set(done)
        pending = [m for i, m in enumerate(pending) if i not in finished]
        searched = min(stretches, tuning.growth * searched)
    return coords, found, valid


def _candidates(
    values: torch.Tensor,
    rows: torch.Tensor,
    chosen: torch.Tensor,
    floor: torch.Tensor,
    width: int,
    tuning: Tuning,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels above ``floor`` ``(m,)`` in the stretches ``chosen`` ``(m, S)`` of the
    maps ``rows`` ``(m,)`` that are no lower than their neighbours along the line (beyond
    a stretch's end, its neighbour's value; beyond the map's border, its own): for each,
    its place in ``rows``, its value, its pixel ``(ndim, ·)`` and whether it is a local
    maximum (no lower than the rest of its neighbourhood); by map, then row-major."""
    spatial = values.shape[1:]
    per_map, per_line = math.prod(spatial) // width, spatial[-1] // width
    searched = chosen.shape[1]
    by_stretch, flat = values.reshape(-1, width), values.reshape(-1)
    step = max(1, tuning.chunk_elements // max(searched * width, 1))
    parts = []
    for first in range(0, rows.numel(), step):
        some = slice(first, first + step)
        index = (rows[some, None] * per_map + chosen[some]).flatten()  # of every stretch
        block = by_stretch.index_select(0, index)  # (stretches, width)
        start = index * width  # each stretch's first value, flat over all maps
        column = chosen[some].flatten() % per_line  # its place along the line
        before = flat.take(start - (column > 0).long())
        after = flat.take(start + width - 1 + (column < per_line - 1).long())
        line_max = torch.empty_like(block)  # the higher neighbour along the line
        if width > 1:
            torch.maximum(block[:, :-2], block[:, 2:], out=line_max[:, 1:-1])
            torch.maximum(before, block[:, 1], out=line_max[:, 0])
            torch.maximum(after, block[:, -2], out=line_max[:, -1])
        else:
            torch.maximum(before, after, out=line_max[:, 0])
        above = floor[some, None].expand(-1, searched).reshape(-1, 1)
        passing = ((block >= line_max) & (block > above)).view(-1).nonzero()[:, 0]  # a read
        stretch = passing // width
        position = start[stretch] + passing % width
        value = block.view(-1)[passing]
        parts.append((stretch // searched + first, value, *_local(values, position, value)))
    owner, value, cell, local = (torch.cat(p, dim=-1) for p in zip(*parts))
    return owner, value, cell, local


def _local(
    values: torch.Tensor, position: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels ``position`` (flat over all maps) and whether each is no lower than the
    lines around its own (a neighbour beyond the border is the pixel itself): pixels
    ``(ndim, ·)`` and a flag each."""
    spatial = values.shape[1:]
    strides = [math.prod(spatial[a + 1 :]) for a in range(len(spatial))]
    cell = torch.stack([(position // st) % s for st, s in zip(strides, spatial)])
    # the lines around: every combination of -1, 0, +1 steps over the other axes
    lines = [torch.zeros_like(position)]
    for axis in range(len(spatial) - 1):
        low = (cell[axis] > 0).long() * -strides[axis]
        high = (cell[axis] < spatial[axis] - 1).long() * strides[axis]
        lines = [x for line in lines for x in (line + low, line, line + high)]
    del lines[len(lines) // 2]  # the pixel's own line, tested already
    straight = position + torch.stack(lines)
    left = (cell[-1] > 0).long()
    right = (cell[-1] < spatial[-1] - 1).long()
    around = torch.cat([straight, straight - left, straight + right])
    return cell, (values.reshape(-1).take(around) <= value).all(dim=0)


def _suppressed(
    owner: torch.Tensor,
    value: torch.Tensor,
    cell: torch.Tensor,
    local: torch.Tensor,
    n: int,
    k: int,
    apart: Rule,
    suppresses: bool,
    tuning: Tuning,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[int]]:
    """Greedy suppression over the local maxima among the candidates of ``n`` maps: the
    first ``k`` kept of each, ``(n, k, ndim)`` pixels, ``(n, k)`` values and which slots
    hold one, and how many each map kept (read from the device).

    Each map's local maxima are put first among its candidates, by decreasing value, then
    position; a pass suppresses the first ``max(first_candidates, 4 k)`` of each, and
    where they hold fewer than ``k`` peaks while more local maxima wait (a plateau: every
    pixel of it is one), the next pass takes ``growth`` times as many. Maps are grouped by
    how many candidates they use (powers of two), so that no map pads to the longest."""
    # by map, local maxima first, then decreasing value, then position (stable sorts,
    # last key first; candidates come in row-major order)
    order = value.argsort(descending=True, stable=True)
    order = order[local[order].to(torch.uint8).argsort(descending=True, stable=True)]
    order = order[owner[order].argsort(stable=True)]
    value, cell = value[order], cell[:, order]
    ones = torch.ones_like(owner)
    counts = torch.zeros(2, n, dtype=torch.long, device=owner.device)
    counts[0].index_add_(0, owner, ones)
    counts[1].index_add_(0, owner, local.long())
    total, maxima = counts.tolist()  # candidates and local maxima per map: one read
    starts = [0, *itertools.accumulate(total)][:-1]
    dev, ndim = value.device, cell.shape[0]
    coords = torch.zeros(n, k, ndim, dtype=torch.long, device=dev)
    values = torch.full((n, k), math.nan, dtype=value.dtype, device=dev)
    valid = torch.zeros(n, k, dtype=torch.bool, device=dev)
    kept = [0] * n
    pending = list(range(n)) if value.numel() else []  # no candidate at all: no peak
    limit = max(tuning.first_candidates, 4 * k)
    while pending:
        groups: dict[int, list[int]] = {}
        for i in pending:  # how many candidates each map uses, to the next power of two
            used = min(max(maxima[i], tuning.first_candidates), limit)
            groups.setdefault((used - 1).bit_length(), []).append(i)
        for size, members in sorted(groups.items()):
            maps = to_device(members, dev)
            slots = torch.arange(1 << size, device=dev)
            usable = slots < to_device([maxima[i] for i in members], dev)[:, None]
            first = to_device([starts[i] for i in members], dev)
            at = (first[:, None] + slots).clamp_(max=value.numel() - 1)
            cells = cell[:, at]
            picks, has = _suppress(cells, usable, k, apart, suppresses)
            at = at.gather(1, picks)
            chosen = cells.gather(2, picks.expand(ndim, -1, -1)).permute(1, 2, 0)
            coords[maps] = chosen * has[:, :, None]
            values[maps] = torch.where(has, value[at], math.nan)
            valid[maps] = has
        counted = valid[to_device(pending, dev)].sum(dim=1).tolist()  # one read
        for i, count in zip(pending, counted):
            kept[i] = count
        # fewer than k peaks in the first candidates, with more local maxima to come
        pending = [i for i in pending if kept[i] < k and maxima[i] > limit]
        limit *= tuning.growth
    return (coords, values, valid), kept


def _suppress(
    cells: torch.Tensor, usable: torch.Tensor, k: int, apart: Rule, suppresses: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy non-maximum suppression over ordered candidates, pixels ``(ndim, N, m)``:
    ``k`` picks of the first candidate not yet suppressed, each suppressing those not
    ``apart`` from it. Returns the picks in order ``(N, k)`` and which are real ``(N, k)``
    (a map can run out of candidates); nothing is read from the device."""
    ndim, n, _ = cells.shape
    open_ = usable.clone()
    picks = torch.zeros(n, k, dtype=torch.long, device=cells.device)
    has = torch.zeros(n, k, dtype=torch.bool, device=cells.device)
    for i in range(k):  # each pick: the first candidate still open, in order
        pick = open_.to(torch.uint8).argmax(dim=1, keepdim=True)  # 0 where none is open
        picks[:, i : i + 1], has[:, i] = pick, open_.any(dim=1)
        open_.scatter_(1, pick, False)
        if suppresses:  # steps from the pick only: k * m, not m * m
            open_ &= apart(cells - cells.gather(2, pick.expand(ndim, n, 1)))
    return picks, has
