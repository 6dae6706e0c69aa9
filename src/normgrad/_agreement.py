"""Repeatability and reproducibility of maps: two models' maps of the same images.

Public through [`normgrad.sanity`][normgrad.sanity].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._checks import check_known
from ._explainers.base import Explainer
from ._model.targets import Target
from .metrics import SIMILARITY_MEASURES, Interval, map_agreement


def agreement(
    explainer: Callable[[nn.Module], Explainer],
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    measure: str = "spearman",
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Repeatability or reproducibility: how alike two models' maps of the same images are.

    Two trainings of one architecture (repeatability) or two architectures
    (reproducibility) explain ``x`` for the same classes (``target=None``: the classes
    ``model_a`` predicts); the mean similarity over images comes with a bootstrap
    interval ([`map_agreement`][normgrad.metrics.map_agreement]).

    Args:
        explainer: builds an explainer for a model; for two architectures, one that
            picks each model's layers (e.g. from [`presets`][normgrad.presets]).
        model_a: one model.
        model_b: the other.
        x: the batch to explain.
        target: what to explain; ``None``: ``model_a``'s predictions, for both.
        measure: as for [`map_similarity`][normgrad.metrics.map_similarity].
        resamples: bootstrap resamples.
        confidence: the interval's level, in (0, 1).
        seed: seed of the resampling.

    Returns:
        [`Interval`][normgrad.metrics.Interval] of the mean similarity.

    Examples:
        >>> import torch, normgrad
        >>> from torch import nn
        >>> from normgrad import sanity
        >>> def model(seed):
        ...     torch.manual_seed(seed)
        ...     return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
        ...                          nn.Linear(4 * 14 * 14, 2))
        >>> x = torch.randn(4, 3, 16, 16)
        >>> r = sanity.agreement(normgrad.Gradient, model(0), model(0), x)
        >>> round(float(r.mean), 6)
        1.0
    """
    check_known([measure], SIMILARITY_MEASURES, "measure", "measure")
    reference = explainer(model_a).explain(x, target)
    fixed = reference.classes if reference.classes is not None else target
    other = explainer(model_b)(x, fixed)
    return map_agreement(reference.saliency, other, measure, resamples, confidence, seed)
