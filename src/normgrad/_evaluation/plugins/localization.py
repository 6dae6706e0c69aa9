"""CheXlocalize's IoU and hit rate and the localisation AUPRC as columns of ``evaluate``:
each image's regions as one mask (boxes and shapes rasterised)."""

from __future__ import annotations

import torch

from ...metrics._auprc import average_precision
from ...metrics._binarize import binarize
from ...metrics._maps import as_maps
from ...metrics._overlap import hits, iou
from ..fields import number
from .base import Batch, EvaluationMetric, Values


class Localization(EvaluationMetric):
    """``"iou"``: the IoU of each map's Otsu segmentation with its regions (an image
    with neither is not scored), ``"hit_rate"``: whether the map's maximum lies in them,
    ``"auprc"``: the pixel-level average precision; each the mean over the images scored
    (the last two over the images with a region). All three are recorded when any is
    asked for (one mask per image)."""

    columns = (("iou", "mIoU"), ("hit_rate", "hit rate"), ("auprc", "AUPRC"))
    fields = (number("iou", 0, 1), number("hit_rate", 0, 1), number("auprc", 0, 1))

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        maps = as_maps(saliency)
        masks = batch.regions.to_masks()
        overlap = batch.later(iou(binarize(maps, "otsu"), masks))
        hit, precision = batch.later(hits(maps, masks)), batch.later(average_precision(maps, masks))
        return {"iou": overlap.values, "hit_rate": hit.values, "auprc": precision.values}
