r"""Overlap of masks (IoU) and CheXlocalize's hit rate (Saporta et al., 2022)."""

from __future__ import annotations

import torch

from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, ShapeError, describe
from ._maps import as_maps, first_maxima
from ._regions.prepared import Regions, prepare_regions


def as_masks(masks: object, argument: str) -> torch.Tensor:
    """Boolean masks ``(N, *spatial)`` from ``(N, 1, *spatial)`` or ``(N, *spatial)``
    (any dtype: nonzero is inside)."""
    if not isinstance(masks, torch.Tensor):
        raise ArgumentTypeError(f"{argument}: expected a tensor of masks, got {describe(masks)}")
    flat = masks if masks.dtype == torch.bool else masks != 0
    return as_maps(flat.to(torch.uint8), argument).bool()


def region_masks(regions: Regions, maps: torch.Tensor) -> torch.Tensor:
    """The union of each sample's regions as masks ``(N, *spatial)`` for maps
    ``(N, *spatial)`` (boxes and shapes rasterised), on the maps' device."""
    return prepare_regions(regions, maps.shape, maps.device).to_masks()


def iou(masks_a: torch.Tensor, masks_b: torch.Tensor) -> torch.Tensor:
    r"""Intersection over union of paired masks, per sample.

    $$
    \mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|}
    $$

    Two empty masks have no union: their IoU is undefined, NaN, and left out of every
    mean (CheXlocalize's rule: an image with neither a prediction nor a ground truth is
    not scored). One empty mask against a non-empty one scores 0.

    Args:
        masks_a: masks ``(N, 1, *spatial)`` or ``(N, *spatial)`` (bool, or nonzero is
            inside), 2-D or 3-D.
        masks_b: masks of the same shape.

    Returns:
        float64 tensor ``(N,)`` in ``[0, 1]``, NaN where both masks are empty.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import iou
        >>> a = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
        >>> b = torch.tensor([[[1, 0], [1, 0]], [[0, 0], [0, 0]]])
        >>> iou(a, b).tolist()
        [0.3333333333333333, nan]
    """
    a, b = as_masks(masks_a, "masks_a"), as_masks(masks_b, "masks_b")
    if a.shape != b.shape:
        raise ShapeError(
            f"masks_b: expected the shape of masks_a {tuple(a.shape)}, got {tuple(b.shape)}",
            b.shape,
        )
    inter = (a & b).flatten(1).sum(dim=1, dtype=torch.float64)
    union = (a | b).flatten(1).sum(dim=1, dtype=torch.float64)
    return inter / union  # 0 / 0 is NaN: two empty masks


def hits(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Hit rate of maps ``(N, *spatial)`` already read and masks of the same shape."""
    n = maps.shape[0]
    point = first_maxima(maps)
    flat = point.clamp(min=0)
    index = torch.zeros(n, dtype=torch.long, device=maps.device)
    for extent, coord in zip(maps.shape[1:], flat.unbind(dim=1)):
        index = index * extent + coord
    inside = masks.reshape(n, -1).gather(1, index[:, None])[:, 0] & (point[:, 0] >= 0)
    present = masks.reshape(n, -1).any(dim=1)
    nan = torch.full((n,), float("nan"), dtype=torch.float64, device=maps.device)
    return torch.where(present, inside.to(torch.float64), nan)


def hit_rate(saliency: torch.Tensor, regions: Regions) -> torch.Tensor:
    r"""CheXlocalize's hit: the map's most representative point lies in the segmentation.

    The point is the map's maximum, the first in row-major (C) order (``np.argmax``, as
    CheXlocalize reads it, and the Pointing Game's point without a tolerance); it is a hit
    when that pixel belongs to the sample's regions. A sample without a region is not
    scored (NaN; CheXlocalize's rule); a constant map has no maximum and misses (where
    CheXlocalize's ``np.argmax`` would take its first pixel). The hit rate is the mean
    over the samples scored, e.g. with [`bootstrap_mean`][normgrad.metrics.bootstrap_mean].

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN.
        regions: boolean masks ``(N, *spatial)`` (or ``(N, 1, *spatial)``) or any form of
            [`Regions`][normgrad.metrics.Regions] (boxes and shapes rasterised).

    Returns:
        float64 tensor ``(N,)``: 1 for a hit, 0 for a miss, NaN without a region.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import hit_rate
        >>> maps = torch.zeros(3, 1, 4, 4); maps[:, 0, 1, 2] = 1
        >>> masks = torch.zeros(3, 4, 4, dtype=torch.bool)
        >>> masks[0, 1, 2] = True; masks[1, 3, 3] = True
        >>> hit_rate(maps, masks).tolist()
        [1.0, 0.0, nan]
    """
    with deferred_checks():  # the call's checks read once, together
        maps = as_maps(saliency)
        return hits(maps, region_masks(regions, maps))
