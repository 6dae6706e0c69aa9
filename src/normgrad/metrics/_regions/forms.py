"""The forms regions arrive in, read by one rule: masks, boxes (per sample, padded, as
numbers, arrays or tensors) and shapes; only types and shapes are checked here, the values
of boxes once per batch where they are prepared (``prepared``)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Union, cast

import numpy as np
import torch

from ..._errors import ArgumentTypeError, ShapeError, describe
from .boxes import box_order
from .shapes import Shape

SampleRegions = Union[
    torch.Tensor,
    "np.ndarray[Any, Any]",
    Sequence[Shape],
    Sequence[Sequence[float]],
    Sequence[float],
]
"""The regions of one sample: boxes as a tensor or numpy array ``(K, 4)`` (or one box
``(4,)``; 6 numbers for volumes), a list of boxes (each 4 or 6 numbers), or a list of
[`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
[`Polygon`][normgrad.metrics.Polygon]."""

Objects = Sequence[SampleRegions]
"""The objects of each image: per image a tensor or numpy array ``(K_i, 4)`` of inclusive
boxes ``(xmin, ymin, xmax, ymax)`` (``(K_i, 6)`` with z for volumes; ``K_i = 0``: no
object; a row all NaN is padding), a list of such boxes (each 4 or 6 numbers), or a list of
[`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
[`Polygon`][normgrad.metrics.Polygon] (2-D only), not mixed with boxes; or the boxes of all
images padded to one tensor ``(N, K, 4)`` with all-NaN padding rows. Every metric accepts
these forms alike."""


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _real(values: torch.Tensor | np.ndarray, argument: str) -> torch.Tensor:
    """``values`` as a tensor of real numbers (a numpy array is read without a copy)."""
    try:
        t = values if isinstance(values, torch.Tensor) else torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(
            f"{argument}: expected box coordinates as numbers, got {describe(values)}"
        ) from None
    if t.dtype == torch.bool or t.is_complex():
        raise ArgumentTypeError(
            f"{argument}: expected box coordinates as real numbers, got dtype {t.dtype}"
        )
    return t


def _box_array(item: torch.Tensor | np.ndarray, argument: str, ndim: int) -> torch.Tensor:
    width = 2 * ndim
    b = _real(item, argument)
    b = b.reshape(0, width) if b.numel() == 0 else b.unsqueeze(0) if b.ndim == 1 else b
    if b.ndim != 2 or b.shape[1] != width:
        raise ShapeError(
            f"{argument}: expected boxes of shape (K, {width}) ({box_order(ndim)}), got shape "
            f"{tuple(item.shape)}",
            item.shape,
        )
    return b


def _box_row(row: object, argument: str, ndim: int) -> list[float]:
    width = 2 * ndim
    if isinstance(row, (torch.Tensor, np.ndarray)):
        t = _real(row, argument)
        if tuple(t.shape) == (width,):
            return [float(v) for v in t.tolist()]
    elif (
        isinstance(row, Sequence)
        and not isinstance(row, str)
        and len(row) == width
        and all(_is_number(v) for v in row)
    ):
        return [float(v) for v in row]
    raise ArgumentTypeError(
        f"{argument}: expected a box of {width} numbers ({box_order(ndim)}) or a Box, Ellipse "
        f"or Polygon, got {describe(row)}"
    )


def region_name(i: int, per_class: int = 0) -> str:
    """Sample ``i``'s regions as the caller gave them: ``regions[i]``, or for regions
    given per class (``per_class`` = K classes per image, the samples being the (image,
    class) pairs, sample-major) ``regions[n][k]``."""
    return f"regions[{i // per_class}][{i % per_class}]" if per_class else f"regions[{i}]"


def sample_regions(
    regions: Sequence[object], ndim: int, per_class: int = 0
) -> list[torch.Tensor | list[Shape]]:
    """Each sample's regions in one of two forms, by the one rule every metric follows:
    boxes ``(K, 2 * ndim)`` (a tensor of real numbers, on its device; rows all NaN are
    padding) or a list of shapes.

    A sample's regions are a tensor or numpy array of boxes ``(K, 2 * ndim)`` (or one box
    ``(2 * ndim,)``); a list (or tuple) of [`Box`][normgrad.metrics.Box],
    [`Ellipse`][normgrad.metrics.Ellipse] and [`Polygon`][normgrad.metrics.Polygon] (2-D
    maps only); a list of boxes, each ``2 * ndim`` numbers (a list, tuple, tensor or array);
    or one box as a flat list of ``2 * ndim`` numbers. An empty list is no region. Only
    types and shapes are checked here; the values of the boxes are checked once for the
    batch (``box_flags``). Errors name a sample's regions by ``region_name``.
    """
    width = 2 * ndim
    out: list[torch.Tensor | list[Shape]] = []
    for i, item in enumerate(regions):
        name = region_name(i, per_class)
        if isinstance(item, (torch.Tensor, np.ndarray)):
            out.append(_box_array(item, name, ndim))
        elif isinstance(item, Sequence) and not isinstance(item, str):
            if any(isinstance(obj, Shape) for obj in item):
                out.append(_shapes(item, name, ndim))
            elif len(item) == width and all(_is_number(v) for v in item):
                out.append(torch.tensor([[float(v) for v in item]], dtype=torch.float64))
            else:
                rows = [_box_row(row, f"{name}[{j}]", ndim) for j, row in enumerate(item)]
                out.append(torch.tensor(rows, dtype=torch.float64).reshape(-1, width))
        else:
            raise ArgumentTypeError(
                f"{name}: expected boxes ({box_order(ndim)}) as a tensor or array "
                f"(K, {width}) or a list, or a list of Box, Ellipse and Polygon, got "
                f"{describe(item)}"
            )
    return out


def _shapes(item: Sequence[object], name: str, ndim: int) -> list[Shape]:
    for j, obj in enumerate(item):
        if not isinstance(obj, Shape):
            raise ArgumentTypeError(
                f"{name}[{j}]: expected a Box, Ellipse or Polygon like the other regions "
                f"of {name} (a sample's regions are shapes or boxes, not both: write a "
                f"box as Box(xmin, ymin, xmax, ymax)), got {describe(obj)}"
            )
        if ndim != 2:
            raise ArgumentTypeError(
                f"{name}[{j}]: a {type(obj).__name__} is 2-D but the maps are "
                f"{ndim}-D; give volume objects as boxes (K, 6)"
            )
    return list(cast(Sequence[Shape], item))


def from_numpy(regions: object) -> object:
    """``regions`` with a numpy array of the whole batch read as a tensor (masks, padded
    boxes), or as a list of its samples when it holds objects (one array per sample)."""
    if isinstance(regions, np.ndarray):
        return list(regions) if regions.dtype == object else torch.as_tensor(regions)
    return regions


def read_forms(
    regions: object, shape: tuple[int, ...], one_by_one: bool, per_class: int = 0
) -> torch.Tensor | list[torch.Tensor | list[Shape]]:
    """The regions of the ``shape[0]`` maps of ``shape`` ``(N, *spatial)``: boolean masks
    ``(N, *spatial)`` (not where the objects are wanted ``one_by_one``, as the detection
    metrics want them), or each sample's boxes or shapes (``sample_regions``; ``per_class``
    as there)."""
    n, ndim = shape[0], len(shape) - 1
    regions = from_numpy(regions)
    if isinstance(regions, torch.Tensor) and regions.dtype == torch.bool and not one_by_one:
        masks = regions[:, 0] if regions.ndim == ndim + 2 and regions.shape[1] == 1 else regions
        if tuple(masks.shape) != shape:
            raise ShapeError(
                f"regions: expected boolean masks of shape {shape} like the saliency maps, "
                f"got shape {tuple(regions.shape)}",
                regions.shape,
            )
        return masks
    if isinstance(regions, torch.Tensor):
        regions = _unbind_padded(regions, shape, one_by_one)
    if not isinstance(regions, Sequence) or isinstance(regions, str):
        raise ArgumentTypeError(
            "regions: expected the regions of each map (a list of box tensors or of "
            f"Box/Ellipse/Polygon lists, one per map), got {describe(regions)}"
            if one_by_one
            else f"regions: expected boolean masks or a list of box tensors, got "
            f"{describe(regions)}"
        )
    if len(regions) != n:
        raise ShapeError(
            f"regions: expected the objects of {n} images (one per map), got {len(regions)}"
            if one_by_one
            else f"regions: expected one box tensor per map ({n}), got {len(regions)}",
            (len(regions),),
        )
    return sample_regions(regions, ndim, per_class)


def _unbind_padded(
    boxes: torch.Tensor, shape: tuple[int, ...], one_by_one: bool
) -> list[torch.Tensor]:
    """The per-sample boxes of a padded tensor ``(N, K, 2 * ndim)``; padding is dropped
    where the boxes are prepared."""
    width = 2 * (len(shape) - 1)
    got = f"got a {boxes.dtype} tensor of shape {tuple(boxes.shape)}"
    if one_by_one:
        if boxes.dtype == torch.bool or boxes.ndim != 3 or boxes.shape[2] != width:
            raise ArgumentTypeError(
                f"regions: expected a list of one box tensor (K_i, {width}) or shape list per "
                f"map, or boxes padded to one tensor (N, K, {width}) with rows of NaN as "
                f"padding; {got} (a mask merges touching objects, so pass them one by one)"
            )
    elif boxes.ndim != 3 or boxes.shape[2] != width or tuple(boxes.shape) == shape:
        raise ArgumentTypeError(
            f"regions: expected boolean masks of shape {shape}, a list of one box tensor "
            f"(K_i, {width}) per map, or boxes padded to one tensor (N, K, {width}) with rows "
            f"of NaN as padding; {got} (masks must be boolean: pass masks.bool())"
        )
    return list(boxes.unbind(0))
