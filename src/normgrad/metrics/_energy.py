r"""Energy-based pointing game: how much of a map's positive mass lies on the regions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch

from .._deferred import deferred_checks
from .._errors import InvalidArgumentError
from ._maps import as_maps
from ._objects import object_lists
from ._regions import PreparedRegions, Regions, _has_shapes, prepare_regions
from ._shapes import Shape, rasterise

# Values per chunk of maps (about 6 MB in float32: they stay in the cache).
_CHUNK_ELEMENTS = 3 << 19
# Sums of at most this many values run on one thread in torch (its grain is 32,768).
_ONE_THREAD = 1 << 12
# Devices where each image's window is summed alone; elsewhere, union masks of all images
# and chunks 32 times as large.
_BY_WINDOW = ("cpu",)


def _chunks(n: int, size: int, elements: int = _CHUNK_ELEMENTS) -> list[slice]:
    """Slices of ``n`` maps of ``size`` values, about ``elements`` values each and never a
    single map beside others (see ``_row_sums``)."""
    step = max(2, elements // max(size, 1))
    starts = list(range(0, n, step))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()  # the last map joins the chunk before
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], n])]


def _row_sums(rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The sum of each row ``(m, L)``; on the CPU each row is reduced alone and in the
    same order whatever ``m`` and the number of threads: a single row is summed beside a
    copy of itself (a single sum would be split between threads, in another order)."""
    if rows.shape[0] == 1:
        return rows.expand(2, -1).sum(dim=1, dtype=dtype)[:1]
    return rows.sum(dim=1, dtype=dtype)


def _sum(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The sum of all ``values`` ``(1,)``, on the CPU in one order whatever the number of
    threads: a few values at once, more along the last axis over all rows at once (see
    ``_row_sums``), then the rows' sums likewise."""
    if values.numel() <= _ONE_THREAD:
        return values.sum(dtype=dtype).view(1)
    while values.ndim > 1:
        values = _row_sums(values.reshape(-1, values.shape[-1]), dtype).view(values.shape[:-1])
    return _row_sums(values.view(1, -1), dtype)


def energy_pointing_game(saliency: torch.Tensor, regions: Regions) -> torch.Tensor:
    r"""Fraction of each map's non-negative mass inside its regions (Wang et al., 2020).

    $$
    E = \frac{\sum_{u \in R} \max(s_u, 0)}{\sum_u \max(s_u, 0)}
    $$

    over the pixels (voxels) $u$ of the map $s$ and the union $R$ of the
    sample's regions. Negative values count as zero. A map without positive mass (all
    zero, or all negative) puts none of it on the regions and scores 0, as a constant map
    scores a miss in the Pointing Game.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN
            or +inf (-inf counts as zero).
        regions: as for [`pointing_game`][normgrad.metrics.pointing_game]: boolean masks, box
            tensors per sample, lists
            of [`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
            [`Polygon`][normgrad.metrics.Polygon] per sample (2-D), or
            [`PreparedRegions`][normgrad.metrics.PreparedRegions]. A region wholly outside
            the map covers nothing and raises a ``UserWarning`` naming its sample.

    Returns:
        float32 ``(N,)`` in ``[0, 1]`` on the maps' device; NaN where a sample has no region.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import energy_pointing_game
        >>> maps = torch.tensor([[[1.0, 3.0], [-2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> masks = torch.tensor([[[False, True], [True, False]],
        ...                       [[True, False], [False, False]]])
        >>> energy_pointing_game(maps, masks)
        tensor([0.7500, 0.0000])
    """
    maps = as_maps(saliency)
    masks: torch.Tensor | None = None
    # on the CPU each image's window is summed on its own (its values are in the cache);
    # elsewhere the work goes in a few large steps, over masks
    by_window = maps.device.type in _BY_WINDOW
    if isinstance(regions, Sequence) and any(_has_shapes(item) for item in regions):
        objects, counts = object_lists(regions, maps.shape)
        shapes = [o for image in objects for o in image if isinstance(o, Shape)]
        pixels = dict(zip(map(id, shapes), rasterise(shapes, maps.shape[1:], maps.device)))
        windows = [
            _union_window([pixels[id(o)] for o in image if isinstance(o, Shape)], maps.device)
            for image in objects
        ]
        present = (counts > 0).to(maps.device)
        if not by_window:
            masks = _pasted(windows, maps.shape, maps.device)
    else:
        prepared = prepare_regions(regions, maps.shape, maps.device)
        masks = prepared.masks
        if masks is None and not by_window:
            masks = prepared.to_masks()
        windows = [] if masks is not None else _box_windows(prepared)
        present = prepared.present()
    n, size = maps.shape[0], math.prod(maps.shape[1:])
    dtype = torch.float64 if maps.dtype == torch.float64 else torch.float32
    total = torch.zeros(n, dtype=dtype, device=maps.device)
    sums: list[torch.Tensor] = []  # inside the windows, image by image
    owners: list[int] = []
    chunks = _chunks(n, size, _CHUNK_ELEMENTS if by_window else _CHUNK_ELEMENTS << 5)
    buffer = maps.new_empty(max((r.stop - r.start for r in chunks), default=0) * size)
    for rows in chunks:
        # a few maps at a time: their positive part stays in the cache between the sums
        part = maps[rows]
        positive = torch.clamp(part, min=0, out=buffer[: part.numel()].view_as(part))
        total[rows] = _row_sums(positive.flatten(1), dtype)
        if masks is not None:
            sums.append(_row_sums(positive.mul_(masks[rows]).flatten(1), dtype))
            owners.extend(range(rows.start, rows.stop))
            continue
        for i in range(rows.start, rows.stop):  # only the pixels of the regions' window
            window = windows[i]
            if window is not None:
                values = positive[i - rows.start][window[0]]
                if window[1] is not None:  # a float product is vectorised, a bool one not
                    values = values * window[1].to(values.dtype)
                sums.append(_sum(values, dtype))
                owners.append(i)
    inside = torch.zeros(n, dtype=dtype, device=maps.device)
    if sums:
        inside[torch.tensor(owners, device=maps.device)] = torch.cat(sums)
    with deferred_checks() as checks:  # NaN and +inf reach the total; read with the others
        checks.add(total, _refuse_non_finite)
    energy = torch.where(total > 0, inside / total.clamp_min(torch.finfo(dtype).tiny), 0.0)
    nan = torch.full_like(energy, float("nan"))
    return torch.where(present, energy, nan).to(torch.float32)


def _refuse_non_finite(totals: list[float]) -> None:
    bad = sum(1 for v in totals if not math.isfinite(v))
    if bad:
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN or +inf, got them in {bad} map(s)"
        )


Window = Optional[tuple[tuple[slice, ...], Optional[torch.Tensor]]]
"""Per sample: the bounding window of its regions, and their union within it (None: all of
it); None for a sample without regions."""


def _box_windows(prepared: PreparedRegions) -> list[Window]:
    """The window of each sample's boxes (array order, inclusive pixels) and their union."""
    boxes: list[list[tuple[list[int], list[int]]]] = [[] for _ in range(prepared.shape[0])]
    ndim = prepared.low.shape[1]
    columns = [prepared.owner[:, None], prepared.low, prepared.high, prepared.valid[:, None]]
    for row in torch.cat([c.double() for c in columns], dim=1).tolist():  # one read
        if row[-1]:
            low = [int(v) for v in row[1 : 1 + ndim]]
            boxes[int(row[0])].append((low, [int(v) for v in row[1 + ndim : 1 + 2 * ndim]]))
    windows: list[Window] = []
    for sample in boxes:
        if not sample:
            windows.append(None)
            continue
        ndim = len(sample[0][0])
        first = [min(lo[a] for lo, _ in sample) for a in range(ndim)]
        last = [max(hi[a] for _, hi in sample) for a in range(ndim)]
        where = tuple(slice(a, b + 1) for a, b in zip(first, last))
        if len(sample) == 1:
            windows.append((where, None))
            continue
        union = torch.zeros([b - a + 1 for a, b in zip(first, last)], dtype=torch.bool)
        for lo, hi in sample:
            union[tuple(slice(a - f, b - f + 1) for a, b, f in zip(lo, hi, first))] = True
        windows.append((where, union.to(prepared.owner.device)))
    return windows


def _union_window(
    shapes: Sequence[tuple[int, int, torch.Tensor] | None], device: torch.device
) -> Window:
    """The window of a sample's shapes and their union within it (from each shape's own
    pixels, as ``rasterise`` gives them)."""
    parts = [window for window in shapes if window is not None]
    if not parts:
        return None
    r0 = min(p[0] for p in parts)
    c0 = min(p[1] for p in parts)
    r1 = max(p[0] + p[2].shape[0] for p in parts)
    c1 = max(p[1] + p[2].shape[1] for p in parts)
    union = torch.zeros(r1 - r0, c1 - c0, dtype=torch.bool, device=device)
    for r, c, inside in parts:
        union[r - r0 : r - r0 + inside.shape[0], c - c0 : c - c0 + inside.shape[1]] |= inside
    return (slice(r0, r1), slice(c0, c1)), union


def _pasted(windows: Sequence[Window], shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Masks ``shape`` ``(N, H, W)`` holding each sample's union in its window."""
    out = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
    for i, window in enumerate(windows):
        if window is not None:
            out[i][window[0]] = True if window[1] is None else window[1]
    return out
