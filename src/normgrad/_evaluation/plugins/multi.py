"""The multi-object Pointing Game as a column of ``evaluate``."""

from __future__ import annotations

import torch

from ...metrics._multi_pointing import multi_from_peaks, peaks_needed
from ..fields import number
from .base import Batch, EvaluationMetric, Values


class MultiPointingGame(EvaluationMetric):
    """``"multi"``: the fraction of each image's objects its top-K peaks find (K its object
    count), the mean over the images with an object."""

    columns = (("multi", "multi-object PG"),)
    fields = (number("multi", 0, 1),)
    needs_objects = True

    def peaks_wanted(self, batch: Batch) -> int:
        return peaks_needed(batch.regions.counts())

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        found = batch.peaks(method, saliency)
        multi = batch.later(multi_from_peaks(found, batch.regions))
        return {"multi": multi.values}
