"""Literal reference of a segmentation target's score, pixel by pixel (tests only)."""

from __future__ import annotations

import itertools

import torch


def reference_segmentation_score(
    logits: torch.Tensor, k: int, mask: torch.Tensor | None, reduction: str
) -> torch.Tensor:
    """Per sample n: the sum over every pixel u of the class's score there times the
    region's weight there (``mask``, else 1 where the class has the largest logit), divided
    by the weights' sum for ``"mean"`` (0 for an empty region). One channel is binary: class
    1 is scored by the logit, class 0 by its negative, class 1 predicted where it is > 0."""
    n, channels, *spatial = logits.shape
    scores = []
    for b in range(n):
        total = logits.new_zeros(())
        weights = 0.0
        for u in itertools.product(*(range(s) for s in spatial)):
            values = [logits[(b, c, *u)] for c in range(channels)]
            if channels == 1:
                score = values[0] if k == 1 else -values[0]
                predicted = float(score) > 0
            else:
                score = values[k]
                best = max(range(channels), key=lambda c: (float(values[c]), -c))
                predicted = best == k
            if mask is None:
                weight = 1.0 if predicted else 0.0
            else:
                weight = float(mask[(b, *u)] if mask.ndim == len(spatial) + 1 else mask[u])
            total = total + weight * score
            weights += weight
        if reduction == "mean":
            total = total / weights if weights != 0 else total * 0
        scores.append(total)
    return torch.stack(scores)
