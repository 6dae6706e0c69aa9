"""Regions to point at: boolean masks or boxes, checked and converted once per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union, cast

import torch

from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ._boxes import box_flags, refuse_box, warn_outside
from ._objects import SampleRegions, from_numpy, objects_of, sample_regions
from ._shapes import Shape, shapes_mask


@dataclass(frozen=True)
class PreparedRegions:
    """The regions of a batch, checked once for maps of one shape on one device.

    Made by [`prepare_regions`][normgrad.metrics.prepare_regions]; every metric accepts it in
    place of the regions, so a batch scored by many methods checks and converts its boxes once.

    Attributes:
        shape: ``(N, *spatial)``: the maps these regions belong to.
        masks: boolean masks ``(N, *spatial)``, when the regions were given as masks;
            else ``None``.
        owner: for boxes: the sample of each box ``(B,)``; empty for masks.
        low: for boxes: the first pixel of each box inside the image, array order
            ``(B, ndim)``.
        high: for boxes: the last pixel of each box inside the image, array order
            ``(B, ndim)``.
        valid: for boxes: whether a box covers at least one pixel of the image
            ``(B,)``.
        outside: which samples have a region wholly outside the map ``(N,)`` (bool;
            ``None``: none have). A sample whose every region is outside has no region
            here (see [`present`][normgrad.metrics.PreparedRegions.present]).
    """

    shape: tuple[int, ...]
    masks: torch.Tensor | None
    owner: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    valid: torch.Tensor
    outside: torch.Tensor | None = None

    def to(self, device: torch.device) -> PreparedRegions:
        """These regions on ``device``."""
        return PreparedRegions(
            self.shape,
            self.masks.to(device) if self.masks is not None else None,
            self.owner.to(device),
            self.low.to(device),
            self.high.to(device),
            self.valid.to(device),
            self.outside.to(device) if self.outside is not None else None,
        )

    def outside_samples(self) -> torch.Tensor:
        """Which samples have a region wholly outside the map ``(N,)`` (bool)."""
        if self.outside is not None:
            return self.outside
        device = self.masks.device if self.masks is not None else self.owner.device
        return torch.zeros(self.shape[0], dtype=torch.bool, device=device)

    def present(self) -> torch.Tensor:
        """Which samples have a region ``(N,)`` (bool)."""
        if self.masks is not None:
            return self.masks.flatten(1).any(dim=1)
        count = torch.zeros(self.shape[0], dtype=torch.long, device=self.owner.device)
        return count.index_add_(0, self.owner, self.valid.long()) > 0

    def to_masks(self) -> torch.Tensor:
        """Boolean masks ``(N, *spatial)`` of the regions."""
        if self.masks is not None:
            return self.masks
        out = torch.zeros(self.shape, dtype=torch.bool, device=self.owner.device)
        rows = zip(
            self.owner.tolist(),
            self.low.long().tolist(),
            self.high.long().tolist(),
            self.valid.tolist(),
        )
        for i, lo, hi, ok in rows:
            if ok:
                out[(i, *(slice(a, b + 1) for a, b in zip(lo, hi)))] = True
        return out


Regions = Union[torch.Tensor, Sequence[SampleRegions], PreparedRegions]
"""Regions to point at: boolean masks ``(N, *spatial)`` (or ``(N, 1, *spatial)``; a tensor
or a numpy array), or per
sample a tensor or numpy array ``(K_i, 4)`` of boxes ``(xmin, ymin, xmax, ymax)`` in the
maps' pixels, inclusive (``(K_i, 6)`` ``(xmin, ymin, zmin, xmax, ymax, zmax)`` for volumes;
``K_i = 0`` means no region), a list of such boxes (each 4 or 6 numbers), a list of
[`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
[`Polygon`][normgrad.metrics.Polygon] (2-D; rasterised to masks; not mixed with boxes), or
the boxes of the batch padded to one tensor ``(N, K, 4)`` (``(N, K, 6)``) whose padding
rows are all NaN, or [`PreparedRegions`][normgrad.metrics.PreparedRegions]. A row of boxes
that is all NaN is padding and covers nothing, in either form. Every metric accepts the
same forms (the objects of [`Objects`][normgrad.metrics.Objects] are these, without masks).
A region wholly outside its map (e.g. boxes in the original image's pixels while the maps
are smaller) covers nothing and is warned about, naming the samples."""


def prepare_regions(
    regions: Regions, shape: Sequence[int], device: torch.device | str | None = None
) -> PreparedRegions:
    """Check and convert ``regions`` once for maps of ``shape`` ``(N, *spatial)``.

    Boxes are clipped to the image: a box of zero width still covers its row or column of
    pixels, a box wholly outside the image covers nothing, float boxes cover the integer
    pixels inside them. Regions wholly outside the map (along some axis, ending before the
    first pixel or starting after the last) raise a ``UserWarning`` naming the samples, the
    map's size and a region's extent; such samples are marked in ``outside``. Box values
    are checked, and outside boxes found, on the maps' device with one read per batch.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import prepare_regions
        >>> boxes = [torch.tensor([[2, 1, 3, 1]]), torch.zeros(0, 4)]
        >>> prepared = prepare_regions(boxes, (2, 4, 5))
        >>> prepared.present().tolist(), int(prepared.to_masks()[0].sum())
        ([True, False], 2)
    """
    shape = tuple(int(s) for s in shape)
    dev = torch.device(device) if device is not None else None
    if isinstance(regions, PreparedRegions):
        if regions.shape != shape:
            raise ShapeError(
                f"regions: expected regions prepared for maps of shape {shape}, got regions "
                f"prepared for {regions.shape}",
                regions.shape,
            )
        return regions.to(dev) if dev is not None else regions
    n, spatial = shape[0], shape[1:]
    if 0 in spatial:
        raise ShapeError(
            f"regions: expected maps of at least one pixel, got maps of shape {shape}", shape
        )
    empty = torch.empty(0, dtype=torch.long, device=dev)
    regions = cast(Regions, from_numpy(regions))
    if isinstance(regions, torch.Tensor) and regions.dtype == torch.bool:
        masks = (
            regions[:, 0] if regions.ndim == len(shape) + 1 and regions.shape[1] == 1 else regions
        )
        if tuple(masks.shape) != shape:
            raise ShapeError(
                f"regions: expected boolean masks of shape {shape} like the saliency maps, "
                f"got shape {tuple(regions.shape)}",
                regions.shape,
            )
        masks = masks.to(dev) if dev is not None else masks
        no_boxes = empty.to(masks.device)
        return PreparedRegions(shape, masks, no_boxes, no_boxes, no_boxes, no_boxes.bool())
    if isinstance(regions, torch.Tensor):
        regions = _unbind_padded(regions, shape)
    if not isinstance(regions, Sequence) or isinstance(regions, str):
        raise ArgumentTypeError(
            f"regions: expected boolean masks or a list of box tensors, got {describe(regions)}"
        )
    if len(regions) != n:
        raise ShapeError(
            f"regions: expected one box tensor per map ({n}), got {len(regions)}", (len(regions),)
        )
    items = sample_regions(regions, len(spatial))
    if any(isinstance(item, list) for item in items):
        objects, _, outside = objects_of(items, spatial)
        masks = torch.stack(
            [shapes_mask(o, spatial, dev) for o in objects]  # type: ignore[arg-type]
        )
        no_boxes = empty.to(masks.device)
        far = (outside > 0).to(masks.device)
        return PreparedRegions(shape, masks, no_boxes, no_boxes, no_boxes, no_boxes.bool(), far)
    boxes = cast(list[torch.Tensor], items)  # no shapes: box tensors
    return _boxes_to_ranges(boxes, shape, dev or torch.device("cpu"))


def _unbind_padded(boxes: torch.Tensor, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """The per-sample boxes of a padded tensor ``(N, K, 2 * ndim)``; padding is dropped later."""
    width = 2 * (len(shape) - 1)
    if boxes.ndim != 3 or boxes.shape[2] != width or tuple(boxes.shape) == shape:
        raise ArgumentTypeError(
            f"regions: expected boolean masks of shape {shape}, a list of one box tensor "
            f"(K_i, {width}) per map, or boxes padded to one tensor (N, K, {width}) with rows "
            f"of NaN as padding; got a {boxes.dtype} tensor of shape {tuple(boxes.shape)} "
            "(masks must be boolean: pass masks.bool())"
        )
    return list(boxes.unbind(0))


def _has_shapes(item: object) -> bool:
    return (
        isinstance(item, Sequence)
        and not isinstance(item, (str, torch.Tensor))
        and any(isinstance(obj, Shape) for obj in item)
    )


def _boxes_to_ranges(
    regions: Sequence[torch.Tensor], shape: tuple[int, ...], device: torch.device
) -> PreparedRegions:
    """Concatenate per-sample boxes into (sample index, lo, hi, valid), clipped, array order.

    Only shapes are looked at per sample; values are checked, and boxes outside the map
    found, once on the concatenation, with one read.
    """
    n, spatial = shape[0], shape[1:]
    ndim = len(spatial)
    counts = [b.shape[0] for b in regions]
    if sum(counts) == 0:
        empty = torch.empty(0, ndim, dtype=torch.float64, device=device)
        none = torch.empty(0, dtype=torch.long, device=device)
        no = torch.empty(0, dtype=torch.bool, device=device)
        return PreparedRegions(shape, None, none, empty, empty, no)
    boxes = torch.cat([b.to(device, torch.float64) for b in regions])
    sizes = torch.tensor(counts, device=device)
    owner = torch.repeat_interleave(
        torch.arange(n, device=device), sizes, output_size=boxes.shape[0]
    )
    flags = box_flags(boxes, spatial)
    padding, bad, far = flags
    some_padding, some_bad, some_far = flags.any(dim=1).tolist()  # the one read
    if some_bad:
        starts = [sum(counts[:i]) for i in range(n)]

        def name(row: int) -> tuple[str, str]:
            i = int(owner[row])
            return f"regions[{i}]", f"regions[{i}][{row - starts[i]}]"

        refuse_box(boxes, bad, name)
    outside = torch.zeros(n, dtype=torch.long, device=device).index_add_(0, owner, far.long())
    if some_far:
        row = int(far.to(torch.uint8).argmax())
        i = int(owner[row])
        samples = outside.nonzero()[:, 0].tolist()
        j = row - sum(counts[:i])
        warn_outside(samples, f"regions[{i}][{j}]", boxes[row].tolist(), spatial)
    if some_padding:
        boxes, owner = boxes[~padding], owner[~padding]
    # box coordinates are (x, y[, z]); array order is ([z,] y, x)
    lo = boxes[:, :ndim].flip(1).ceil().clamp_min(0)
    limit = torch.tensor([s - 1 for s in spatial], dtype=torch.float64, device=device)
    hi = torch.minimum(boxes[:, ndim:].flip(1).floor(), limit)
    valid = (lo <= hi).all(dim=1)
    return PreparedRegions(shape, None, owner, lo, hi, valid, outside > 0)


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
