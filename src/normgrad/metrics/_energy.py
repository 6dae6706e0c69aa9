r"""Energy-based pointing game: how much of a map's positive mass lies on the regions."""

from __future__ import annotations

import torch

from .._errors import InvalidArgumentError
from ._maps import as_maps
from ._regions import PreparedRegions, Regions, prepare_regions

# Values per chunk of maps (about 2 MB in float32).
_CHUNK_ELEMENTS = 1 << 19


def energy_pointing_game(saliency: torch.Tensor, regions: Regions) -> torch.Tensor:
    r"""Fraction of each map's non-negative mass inside its regions (Wang et al., 2020).

    .. math:: E = \frac{\sum_{u \in R} \max(s_u, 0)}{\sum_u \max(s_u, 0)}

    over the pixels (voxels) :math:`u` of the map :math:`s` and the union :math:`R` of the
    sample's regions. Negative values count as zero. A map without positive mass (all
    zero, or all negative) puts none of it on the regions and scores 0, as a constant map
    scores a miss in the Pointing Game.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN
            or +inf (-inf counts as zero).
        regions: as for :func:`pointing_game`: boolean masks, box tensors per sample, lists
            of :class:`Box`, :class:`Ellipse` and :class:`Polygon` per sample (2-D), or
            :class:`PreparedRegions`.

    Returns:
        float32 ``(N,)`` in ``[0, 1]`` on the maps' device; NaN where a sample has no region.

    Example:
        >>> maps = torch.tensor([[[1.0, 3.0], [-2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> masks = torch.tensor([[[False, True], [True, False]], [[True, False], [False, False]]])
        >>> energy_pointing_game(maps, masks)
        tensor([0.7500, 0.0000])
    """
    maps = as_maps(saliency)
    prepared = prepare_regions(regions, maps.shape, maps.device)
    boxes = None if prepared.masks is not None else _boxes_by_sample(prepared)
    n = maps.shape[0]
    dtype = torch.float64 if maps.dtype == torch.float64 else torch.float32
    total = torch.zeros(n, dtype=dtype, device=maps.device)
    inside = torch.zeros(n, dtype=dtype, device=maps.device)
    # a few maps at a time: their positive part stays in the cache between the two sums
    step = max(1, _CHUNK_ELEMENTS // max(1, maps[0].numel()))
    buffer = torch.empty((min(step, n), *maps.shape[1:]), dtype=maps.dtype, device=maps.device)
    for start in range(0, n, step):
        stop = min(n, start + step)
        positive = torch.clamp(maps[start:stop], min=0, out=buffer[: stop - start])
        total[start:stop] = positive.flatten(1).sum(dim=1, dtype=dtype)
        if prepared.masks is not None:
            positive.mul_(prepared.masks[start:stop])
            inside[start:stop] = positive.flatten(1).sum(dim=1, dtype=dtype)
            continue
        for i in range(start, stop):  # boxes: only the pixels of their bounding window
            if boxes is not None and boxes[i]:
                inside[i] = _sum_over_boxes(positive[i - start], boxes[i], dtype)
    if not bool(torch.isfinite(total).all()):  # NaN and +inf reach the total
        bad = int((~torch.isfinite(total)).sum())
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN or +inf, got them in {bad} map(s)"
        )
    energy = torch.where(total > 0, inside / total.clamp_min(torch.finfo(dtype).tiny), 0.0)
    nan = torch.full_like(energy, float("nan"))
    return torch.where(prepared.present(), energy, nan).to(torch.float32)


def _boxes_by_sample(prepared: PreparedRegions) -> list[list[tuple[list[int], list[int]]]]:
    """The first and last pixel (array order) of each box covering a pixel, per sample."""
    out: list[list[tuple[list[int], list[int]]]] = [[] for _ in range(prepared.shape[0])]
    rows = zip(
        prepared.owner.tolist(),
        prepared.low.long().tolist(),
        prepared.high.long().tolist(),
        prepared.valid.tolist(),
    )
    for i, low, high, valid in rows:
        if valid:
            out[i].append((low, high))
    return out


def _sum_over_boxes(
    values: torch.Tensor, boxes: list[tuple[list[int], list[int]]], dtype: torch.dtype
) -> torch.Tensor:
    """Sum of ``values`` over the union of inclusive ``boxes`` (array order)."""
    first = [min(lo[a] for lo, _ in boxes) for a in range(values.ndim)]
    last = [max(hi[a] for _, hi in boxes) for a in range(values.ndim)]
    window = values[tuple(slice(a, b + 1) for a, b in zip(first, last))]
    if len(boxes) == 1:
        return window.sum(dtype=dtype)
    union = torch.zeros(window.shape, dtype=torch.bool, device=values.device)
    for lo, hi in boxes:
        union[tuple(slice(a - f, b - f + 1) for a, b, f in zip(lo, hi, first))] = True
    return (window * union).sum(dtype=dtype)
