"""Labels of several classes per image ``(N, K)``: each (image, class) pair is scored as an
image of its own, its id ``"<image>/<class>"``."""

from __future__ import annotations

from typing import Any

import torch

from ..metrics._per_class import per_class_regions
from ..metrics._regions.prepared import Regions


def classes_per_image(labels: Any) -> int:
    """``K`` for labels ``(N, K)`` (several classes per image), else 0."""
    return labels.shape[1] if isinstance(labels, torch.Tensor) and labels.ndim == 2 else 0


def pairs(
    x: torch.Tensor, labels: torch.Tensor, regions: Any, ids: list[str]
) -> tuple[torch.Tensor, Regions, list[str]]:
    """The images, regions and ids of the batch's (image, class) pairs, sample-major: each
    image repeated ``K`` times, the regions given per class (see
    [`ClassRegions`][normgrad.metrics.ClassRegions]) flattened, the ids
    ``"<image>/<class>"``. The labels are read on the host (data's labels usually are)."""
    k = labels.shape[1]
    flat = per_class_regions(regions, x.shape[0], k)
    named = [f"{image}/{c}" for image, row in zip(ids, labels.tolist()) for c in row]
    return x.repeat_interleave(k, 0), flat, named


def pair_maps(saliency: torch.Tensor, k: int) -> torch.Tensor:
    """Maps ``(N, K, *spatial)`` as the maps of the pairs ``(N * K, 1, *spatial)``."""
    return saliency.flatten(0, 1).unsqueeze(1) if k else saliency
