"""Deletion and insertion as columns of ``evaluate``: one pair of curves per map."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..._errors import InvalidArgumentError, describe
from ..._model.targets import ClassTarget, resolve_target
from ...metrics._deletion import class_target, curves, fit_options
from ...metrics._maps import as_maps
from ..fields import number
from .base import Batch, EvaluationMetric, Values


class DeletionInsertion(EvaluationMetric):
    """``"deletion"`` and ``"insertion"``: the mean areas under each image's deletion and
    insertion curves, for the class explained; both are recorded when either is asked
    for (one pair of curves)."""

    columns = (("deletion", "deletion AUC"), ("insertion", "insertion AUC"))
    fields = (number("deletion"), number("insertion"))

    def check_images(self, options: Mapping[str, Any], x: torch.Tensor, labels: Any) -> None:
        # checked once per run (evaluate), here what depends on the images and labels
        fit_options(options["deletion_options"], x.shape, "deletion_options")
        if not isinstance(resolve_target(labels), ClassTarget):
            raise InvalidArgumentError(
                "metrics: 'deletion' and 'insertion' follow a class's probability, read from "
                f"a classifier's logits, but the labels are a score function "
                f"({describe(labels)}: a SegmentationTarget or a callable) with no class "
                "probability; leave 'deletion' and 'insertion' out of metrics"
            )

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        target = class_target(batch.classes)  # the class the explainers explained
        options = batch.options["deletion_options"]
        found = curves(batch.model, batch.x, as_maps(saliency), target, options)
        deletion, insertion = batch.later(found.deletion_auc), batch.later(found.insertion_auc)
        return {"deletion": deletion.values, "insertion": insertion.values}
