"""Deletion and insertion as columns of ``evaluate``: one pair of curves per map."""

from __future__ import annotations

import torch

from ...metrics import deletion_insertion
from ..fields import number
from .base import Batch, EvaluationMetric, Values


class DeletionInsertion(EvaluationMetric):
    """``"deletion"`` and ``"insertion"``: the mean areas under each image's deletion and
    insertion curves, for the class explained; both are recorded when either is asked
    for (one pair of curves)."""

    columns = (("deletion", "deletion AUC"), ("insertion", "insertion AUC"))
    fields = (number("deletion"), number("insertion"))

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        options = batch.options["deletion_options"]
        curves = deletion_insertion(batch.model, batch.x, saliency, target=batch.classes, **options)
        deletion, insertion = batch.later(curves.deletion_auc), batch.later(curves.insertion_auc)
        return {"deletion": deletion.values, "insertion": insertion.values}
