r"""Energy-based pointing game: how much of a map's positive mass lies on the regions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._deferred import deferred_checks
from .._errors import InvalidArgumentError
from .._transfer import to_device
from ._maps import as_maps
from ._regions.pixels import Window
from ._regions.prepared import Regions, prepare_regions

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

    Reads the device once per call, the regions' checks with the maps'; on the CPU, where
    each image's window is summed alone, the windows of boxes and shapes are read once
    more (from host memory: no device waits).

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
    # on the CPU each image's window is summed on its own (its values are in the cache);
    # elsewhere the work goes in a few large steps, over masks
    by_window = maps.device.type in _BY_WINDOW
    with deferred_checks() as checks:  # the regions' checks and the maps' read together
        prepared = prepare_regions(regions, maps.shape, maps.device)
        masks = prepared.masks
        if masks is None and not by_window:
            masks = prepared.to_masks()
        windows = prepared.windows() if masks is None else []
        inside, total = _sums(maps, masks, windows, by_window)
        checks.add(total, _refuse_non_finite)  # NaN and +inf reach the total
    energy = torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)
    nan = torch.full_like(energy, float("nan"))
    return torch.where(prepared.present(), energy, nan).to(torch.float32)


def _sums(
    maps: torch.Tensor, masks: torch.Tensor | None, windows: Sequence[Window], by_window: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map's positive mass on its regions (the union ``masks``, or within each
    sample's window) and in all ``(N,)``, a few maps at a time."""
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
        inside[to_device(owners, maps.device)] = torch.cat(sums)
    return inside, total


def _refuse_non_finite(totals: list[float]) -> None:
    bad = sum(1 for v in totals if not math.isfinite(v))
    if bad:
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN or +inf, got them in {bad} map(s)"
        )
