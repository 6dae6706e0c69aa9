"""Multi-object pointing game: how many of an image's objects its top peaks find."""

from __future__ import annotations

import torch

from .._checks import check_number
from ._maps import as_maps
from ._objects import Objects, match, object_lists
from ._peaks import peaks


def multi_pointing_game(
    saliency: torch.Tensor, regions: Objects, *, min_distance: float = 15
) -> torch.Tensor:
    r"""Fraction of each image's objects found by its top-``K`` peaks, ``K`` its object count.

    The map's [`peaks`][normgrad.metrics.peaks] (at least ``min_distance`` apart) are matched to
    the objects as
    in [`froc`][normgrad.metrics.froc]: in order of decreasing value, a peak lying in an object not
    yet found
    finds it (the first such object in the order given), so one peak finds one object
    even where objects overlap. With one object this is the Pointing Game at tolerance 0
    (the point must lie in the object), except that a constant map has no peak.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, finite.
        regions: the objects of each image ([`Objects`][normgrad.metrics.Objects]): box tensors, or
            lists of
            [`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
            [`Polygon`][normgrad.metrics.Polygon]. Objects with no pixel in
            the image are not counted.
        min_distance: smallest distance between two peaks, in pixels.

    Returns:
        float32 ``(N,)`` in ``[0, 1]``: found objects over ``K``; NaN where ``K = 0``.

    Examples:
        >>> maps = torch.zeros(1, 1, 8, 8); maps[0, 0, 1, 1] = 2; maps[0, 0, 6, 6] = 1
        >>> objects = [torch.tensor([[0, 0, 2, 2], [5, 5, 7, 7], [0, 5, 2, 7]])]
        >>> multi_pointing_game(maps, objects, min_distance=3)
        tensor([0.6667])
    """
    distance = check_number(min_distance, "min_distance", low=0)
    maps = as_maps(saliency)
    objects, counts = object_lists(regions, maps.shape)
    k = max(1, int(counts.max())) if counts.numel() else 1
    found = peaks(maps, k, min_distance=distance)
    counts = counts.to(maps.device)
    within = torch.arange(k, device=maps.device)[None, :] < counts[:, None]
    _, hits = match(found.coords, found.valid & within, objects)
    share = hits.to(torch.float64) / counts.clamp_min(1)
    nan = torch.full_like(share, float("nan"))
    return torch.where(counts > 0, share, nan).to(torch.float32)
