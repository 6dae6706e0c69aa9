"""Regions to point at: boolean masks or boxes, checked and converted once per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union, cast

import torch

from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ._objects import object_lists
from ._shapes import Shape, shapes_mask


@dataclass(frozen=True)
class PreparedRegions:
    """The regions of a batch, checked once for maps of one shape on one device.

    Made by :func:`prepare_regions`; every metric accepts it in place of the regions, so a
    batch scored by many methods checks and converts its boxes once.
    """

    shape: tuple[int, ...]
    """``(N, *spatial)``: the maps these regions belong to."""
    masks: torch.Tensor | None
    """Boolean masks ``(N, *spatial)``, when the regions were given as masks."""
    owner: torch.Tensor
    """For boxes: the sample of each box ``(B,)``; empty for masks."""
    low: torch.Tensor
    """For boxes: first pixel of each box inside the image, array order ``(B, ndim)``."""
    high: torch.Tensor
    """For boxes: last pixel of each box inside the image, array order ``(B, ndim)``."""
    valid: torch.Tensor
    """For boxes: whether a box covers at least one pixel of the image ``(B,)``."""

    def to(self, device: torch.device) -> PreparedRegions:
        """These regions on ``device``."""
        return PreparedRegions(
            self.shape,
            self.masks.to(device) if self.masks is not None else None,
            self.owner.to(device),
            self.low.to(device),
            self.high.to(device),
            self.valid.to(device),
        )

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


Regions = Union[torch.Tensor, Sequence[Union[torch.Tensor, Sequence[Shape]]], PreparedRegions]
"""Regions to point at: boolean masks ``(N, *spatial)`` (or ``(N, 1, *spatial)``), or per
sample a tensor ``(K_i, 4)`` of boxes ``(xmin, ymin, xmax, ymax)`` in pixels, inclusive
(``(K_i, 6)`` ``(xmin, ymin, zmin, xmax, ymax, zmax)`` for volumes; ``K_i = 0`` means no
region) or a list of :class:`Box`, :class:`Ellipse` and :class:`Polygon` (2-D; rasterised
to masks), or :class:`PreparedRegions`."""


def prepare_regions(
    regions: Regions, shape: Sequence[int], device: torch.device | str | None = None
) -> PreparedRegions:
    """Check and convert ``regions`` once for maps of ``shape`` ``(N, *spatial)``.

    Boxes are clipped to the image: a box of zero width still covers its row or column of
    pixels, a box wholly outside the image covers nothing, float boxes cover the integer
    pixels inside them.

    Example:
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
    empty = torch.empty(0, dtype=torch.long, device=dev)
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
        raise ArgumentTypeError(
            "regions: expected boolean masks (or a list of boxes per sample), "
            f"got dtype {regions.dtype}"
        )
    if not isinstance(regions, Sequence) or isinstance(regions, str):
        raise ArgumentTypeError(
            f"regions: expected boolean masks or a list of box tensors, got {describe(regions)}"
        )
    if len(regions) != n:
        raise ShapeError(
            f"regions: expected one box tensor per map ({n}), got {len(regions)}", (len(regions),)
        )
    if any(_has_shapes(item) for item in regions):
        objects, _ = object_lists(regions, shape)
        masks = torch.stack(
            [shapes_mask(o, spatial, dev) for o in objects]  # type: ignore[arg-type]
        )
        no_boxes = empty.to(masks.device)
        return PreparedRegions(shape, masks, no_boxes, no_boxes, no_boxes, no_boxes.bool())
    boxes = cast(Sequence[torch.Tensor], regions)  # no shapes: tensors or lists of numbers
    owner, low, high, valid = _boxes_to_ranges(boxes, spatial, dev or torch.device("cpu"))
    return PreparedRegions(shape, None, owner, low, high, valid)


def _has_shapes(item: object) -> bool:
    return (
        isinstance(item, Sequence)
        and not isinstance(item, (str, torch.Tensor))
        and any(isinstance(obj, Shape) for obj in item)
    )


def _boxes_to_ranges(
    regions: Sequence[torch.Tensor], spatial: Sequence[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate per-sample boxes into (sample index, lo, hi, valid), clipped, array order.

    Only shapes are looked at per sample; values are checked once on the concatenation.
    """
    ndim = len(spatial)
    width = 2 * ndim
    order = "xmin, ymin, xmax, ymax" if ndim == 2 else "xmin, ymin, zmin, xmax, ymax, zmax"
    tensors = []
    for i, boxes in enumerate(regions):
        b = boxes if isinstance(boxes, torch.Tensor) else torch.as_tensor(boxes)
        if b.numel() == 0:
            b = b.reshape(0, width)
        elif b.ndim == 1:
            b = b.unsqueeze(0)
        if b.ndim != 2 or b.shape[1] != width:
            raise ShapeError(
                f"regions[{i}]: expected boxes of shape (K, {width}) ({order}), "
                f"got shape {tuple(b.shape)}",
                b.shape,
            )
        tensors.append(b)
    counts = torch.tensor([b.shape[0] for b in tensors], device=device)
    if not tensors or int(counts.sum()) == 0:
        empty = torch.empty(0, ndim, dtype=torch.float64, device=device)
        none = torch.empty(0, dtype=torch.long, device=device)
        return none, empty, empty, torch.empty(0, dtype=torch.bool, device=device)
    boxes = torch.cat([b.to(device) for b in tensors]).to(torch.float64)
    owner = torch.repeat_interleave(torch.arange(len(tensors), device=device), counts)
    bad = ~torch.isfinite(boxes).all(dim=1) | (boxes[:, :ndim] > boxes[:, ndim:]).any(dim=1)
    if bool(bad.any()):
        first = int(owner[bad][0])
        rows = boxes[owner == first].tolist()
        raise InvalidArgumentError(
            f"regions[{first}]: expected finite boxes ({order}) with min <= max for every "
            f"coordinate, got {rows}"
        )
    # box coordinates are (x, y[, z]); array order is ([z,] y, x)
    lo = boxes[:, :ndim].flip(1).ceil().clamp_min(0)
    limit = torch.tensor([s - 1 for s in spatial], dtype=torch.float64, device=device)
    hi = torch.minimum(boxes[:, ndim:].flip(1).floor(), limit)
    valid = (lo <= hi).all(dim=1)
    return owner, lo, hi, valid
