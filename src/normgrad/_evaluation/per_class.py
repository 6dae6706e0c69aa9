"""Labels of several classes per image ``(N, K)``: each (image, class) pair is scored as an
image of its own, its id ``"<image>/<class>"``."""

from __future__ import annotations

from typing import Any

import torch

from .._errors import InvalidArgumentError
from ..metrics._per_class import per_class_regions
from ..metrics._regions.prepared import Regions


def classes_per_image(labels: Any) -> int:
    """``K`` for labels ``(N, K)`` (several classes per image), else 0."""
    return labels.shape[1] if isinstance(labels, torch.Tensor) and labels.ndim == 2 else 0


def record_ids(ids: list[str], labels: Any, step: int) -> list[str]:
    """The ids of a batch's records: ``ids``, or for labels ``(N, K)`` the pairs' ids
    ``"<image>/<class>"``, sample-major (read on the host), refusing an image that lists a
    class twice (its pair would be scored twice), naming the labels of batch ``step``."""
    if not classes_per_image(labels):
        return ids
    rows = labels.tolist()
    for image, row in zip(ids, rows):
        twice = [c for i, c in enumerate(row) if c in row[:i]]
        if twice:
            raise InvalidArgumentError(
                f"data: the labels of batch {step} (the second element of each batch): image "
                f"{image!r} lists class {twice[0]} more than once ({row}); each (image, "
                "class) pair is scored once: give each class once per row"
            )
    return _pair_ids(ids, rows)


def _pair_ids(ids: list[str], rows: list[list[int]]) -> list[str]:
    return [f"{image}/{c}" for image, row in zip(ids, rows) for c in row]


def pairs(
    x: torch.Tensor, labels: torch.Tensor, regions: Any, ids: list[str]
) -> tuple[torch.Tensor, Regions, list[str]]:
    """The images, regions and ids of the batch's (image, class) pairs, sample-major: each
    image repeated ``K`` times, the regions given per class (see
    [`ClassRegions`][normgrad.metrics.ClassRegions]) flattened, the ids
    ``"<image>/<class>"``. The labels are read on the host (data's labels usually are)."""
    k = labels.shape[1]
    flat = per_class_regions(regions, x.shape[0], k)
    return x.repeat_interleave(k, 0), flat, _pair_ids(ids, labels.tolist())


def pair_maps(saliency: torch.Tensor, k: int) -> torch.Tensor:
    """Maps ``(N, K, *spatial)`` as the maps of the pairs ``(N * K, 1, *spatial)``."""
    return saliency.flatten(0, 1).unsqueeze(1) if k else saliency
