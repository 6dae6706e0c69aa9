"""Samples of a detection data set collated into batches every metric accepts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe


def collate(
    batch: Sequence[tuple[Any, Any, Any]],
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | list[torch.Tensor]]:
    """Collate ``(image, label, regions)`` samples into a batch every metric accepts.

    Pass it to a data loader, ``DataLoader(dataset, batch_size=8, collate_fn=metrics.collate)``:
    torch's default collate cannot stack boxes whose count differs between images, and stacks
    equal counts into one tensor without padding. Here images and labels are stacked, boxes
    are kept as a list of one tensor ``(K_i, 4)`` per image (``(0, 4)`` for an image without
    a box; ``(K_i, 6)`` for volumes) and boolean masks are stacked ``(N, *spatial)``.

    Args:
        batch: the samples: ``image`` a tensor (or array) ``(C, *spatial)``; ``label`` the
            class to explain, an int or a 0-d int tensor, or ``None`` for the predicted
            class; ``regions`` a boolean mask ``(*spatial)`` or ``(1, *spatial)``, or boxes
            ``(K, 4)`` ``(xmin, ymin, xmax, ymax)`` in pixels as a tensor, array or list.

    Returns:
        ``(images, labels, regions)``: images ``(N, C, *spatial)``; labels an int64 tensor
        ``(N,)``, or ``None`` when every label is ``None``; regions boolean masks
        ``(N, *spatial)`` or a list of N box tensors.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import collate
        >>> two = torch.tensor([[0, 0, 2, 2], [4, 4, 6, 6]])
        >>> samples = [(torch.zeros(1, 8, 8), 1, two),
        ...            (torch.zeros(1, 8, 8), 0, torch.zeros(0, 4))]
        >>> images, labels, boxes = collate(samples)
        >>> images.shape, labels.tolist(), [tuple(b.shape) for b in boxes]
        (torch.Size([2, 1, 8, 8]), [1, 0], [(2, 4), (0, 4)])
    """
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence) or not batch:
        raise ArgumentTypeError(
            f"batch: expected a non-empty list of (image, label, regions) samples, "
            f"got {describe(batch)}"
        )
    for i, sample in enumerate(batch):
        if not isinstance(sample, (tuple, list)) or len(sample) != 3:
            raise ArgumentTypeError(
                f"batch[{i}]: expected a sample (image, label, regions), got {describe(sample)}"
            )
    images = [torch.as_tensor(sample[0]) for sample in batch]
    for i, image in enumerate(images):
        if image.shape != images[0].shape:
            raise ShapeError(
                f"batch[{i}]: expected images of one shape to stack, got {tuple(image.shape)} "
                f"after {tuple(images[0].shape)} (resize or crop them in the dataset)",
                image.shape,
            )
    return torch.stack(images), _collate_labels(batch), _collate_regions(batch, images[0].ndim)


def _collate_labels(batch: Sequence[tuple[Any, Any, Any]]) -> torch.Tensor | None:
    labels = [sample[1] for sample in batch]
    missing = [label is None for label in labels]
    if all(missing):
        return None
    if any(missing):
        raise InvalidArgumentError(
            f"batch[{missing.index(True)}]: expected every label to be a class index or every "
            "label to be None (the predicted class), got a mix"
        )
    classes = []
    for i, label in enumerate(labels):
        t = torch.as_tensor(label)
        if t.numel() != 1 or t.is_floating_point() or t.is_complex():
            raise ArgumentTypeError(
                f"batch[{i}]: expected the label to be a class index (an int) or None, "
                f"got {describe(label)}"
            )
        classes.append(t.reshape(()).long())
    return torch.stack(classes)


def _collate_regions(
    batch: Sequence[tuple[Any, Any, Any]], image_ndim: int
) -> torch.Tensor | list[torch.Tensor]:
    regions = [torch.as_tensor(sample[2]) for sample in batch]
    masks = [r.dtype == torch.bool for r in regions]
    if all(masks):
        spatial = image_ndim - 1
        return torch.stack([r[0] if r.ndim == spatial + 1 else r for r in regions])
    if any(masks):
        raise ArgumentTypeError(
            f"batch[{masks.index(True)}]: expected the regions of every sample to be boolean "
            "masks or every sample's to be boxes, got a mix"
        )
    width = 2 * (image_ndim - 1)
    return [r.reshape(0, width) if r.numel() == 0 else r for r in regions]
