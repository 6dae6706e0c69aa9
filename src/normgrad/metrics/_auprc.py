r"""Localisation AUPRC: pixel-level average precision of a map against its regions."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._deferred import deferred_checks
from ._binarize import refuse_nan
from ._bootstrap import Interval, bootstrap_mean
from ._maps import as_maps
from ._overlap import region_masks
from ._regions.prepared import Regions


@dataclass(frozen=True)
class AUPRCResult:
    """Per-image average precision and its mean with a bootstrap interval.

    Attributes:
        values: the average precision of each image ``(N,)`` (float64; NaN without a
            region).
        interval: their mean over the images with a region and its bootstrap interval
            ([`Interval`][normgrad.metrics.Interval]).
    """

    values: torch.Tensor
    interval: Interval


def average_precision(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Average precision of maps ``(N, *spatial)`` already read against masks of the same
    shape, per image (float64, NaN without a positive pixel)."""
    n = maps.shape[0]
    scores = maps.reshape(n, -1).to(torch.float64)
    refuse_nan(scores)
    labels = masks.reshape(n, -1)
    ordered, order = scores.sort(dim=1, descending=True, stable=True)
    positive = labels.gather(1, order).to(torch.float64)
    found = positive.cumsum(dim=1)
    length = scores.shape[1]
    # the last position of each run of equal scores: one threshold of the curve
    last = torch.ones_like(ordered, dtype=torch.bool)
    last[:, :-1] = ordered[:, :-1] != ordered[:, 1:]
    position = torch.arange(length, device=maps.device).expand(n, length)
    marked = torch.where(last, position, length)
    end = marked.flip(1).cummin(dim=1).values.flip(1)  # each position's run end
    precision = found.gather(1, end) / (end + 1).to(torch.float64)
    total = found[:, -1] if length else found.new_zeros(n)
    return (positive * precision).sum(dim=1) / total  # 0 / 0 is NaN: no region


def localization_auprc(
    saliency: torch.Tensor,
    regions: Regions,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AUPRCResult:
    r"""Pixel-level average precision of each map against its regions, and their mean.

    Every pixel is a detection scored by the map and labelled by the regions; the average
    precision sums the precision at each distinct score (threshold), weighted by the
    recall it adds,

    $$
    \mathrm{AP} = \sum_k (R_k - R_{k-1}) P_k ,
    $$

    with pixels of equal score entering together (scikit-learn's
    ``average_precision_score`` on the flattened map, ties included). It is the
    area under the precision-recall curve without interpolation; a map that ranks every
    region pixel first scores 1, a constant map the share of region pixels. The mean over
    images with a region has a bootstrap interval
    ([`bootstrap_mean`][normgrad.metrics.bootstrap_mean]).

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN.
        regions: boolean masks ``(N, *spatial)`` (or ``(N, 1, *spatial)``) or any form of
            [`Regions`][normgrad.metrics.Regions] (boxes and shapes rasterised).
        resamples: bootstrap resamples of the interval (an int >= 0).
        confidence: the interval's level, in (0, 1).
        seed: seed of the resampling.

    Returns:
        [`AUPRCResult`][normgrad.metrics.AUPRCResult]: per image ``(N,)`` in ``[0, 1]``,
        NaN for an image without a region, and the mean with its interval.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import localization_auprc
        >>> maps = torch.tensor([[[0.9, 0.1], [0.8, 0.3]]])
        >>> masks = torch.tensor([[[True, False], [False, True]]])
        >>> localization_auprc(maps, masks).values.tolist()
        [0.8333333333333333]
    """
    with deferred_checks():  # the call's checks read once, together
        maps = as_maps(saliency)
        values = average_precision(maps, region_masks(regions, maps))
        return AUPRCResult(values, bootstrap_mean(values, resamples, confidence, seed))
