"""Objects to find, one by one (not their union): shapes or boxes per image, and matching."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Union, cast

import numpy as np
import torch

from .._errors import ArgumentTypeError, ShapeError, describe
from ._boxes import box_flags, box_order, refuse_box, warn_outside
from ._shapes import Box, Shape, contains_many, covering

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


class _Cuboid:
    """An inclusive box in array order, for volumes (the 3-D [`Box`][normgrad.metrics.Box])."""

    def __init__(self, row: Sequence[float]) -> None:
        """``row`` ``(xmin, ymin, zmin, xmax, ymax, zmax)``, checked by the caller."""
        self.row = tuple(row)
        self.low = torch.tensor(row[:3][::-1], dtype=torch.float64)
        self.high = torch.tensor(row[3:][::-1], dtype=torch.float64)

    @staticmethod
    def contains_many(cuboids: Sequence[_Cuboid], points: torch.Tensor) -> torch.Tensor:
        """Whether each cuboid's points ``(B, M, 3)`` lie in it ``(B, M)``."""
        p = points.to(torch.float64)
        low = torch.stack([c.low for c in cuboids]).to(p.device)[:, None]
        high = torch.stack([c.high for c in cuboids]).to(p.device)[:, None]
        return ((p >= low) & (p <= high)).all(dim=-1)

    def covers(self, size: Sequence[int]) -> bool:
        limit = torch.tensor([s - 1 for s in size], dtype=torch.float64)
        return bool((self.low.ceil().clamp_min(0) <= self.high.floor().clamp(max=limit)).all())


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


def sample_regions(regions: Sequence[object], ndim: int) -> list[torch.Tensor | list[Shape]]:
    """Each sample's regions in one of two forms, by the one rule every metric follows:
    boxes ``(K, 2 * ndim)`` (a tensor of real numbers, on its device; rows all NaN are
    padding) or a list of shapes.

    A sample's regions are a tensor or numpy array of boxes ``(K, 2 * ndim)`` (or one box
    ``(2 * ndim,)``); a list (or tuple) of [`Box`][normgrad.metrics.Box],
    [`Ellipse`][normgrad.metrics.Ellipse] and [`Polygon`][normgrad.metrics.Polygon] (2-D
    maps only); a list of boxes, each ``2 * ndim`` numbers (a list, tuple, tensor or array);
    or one box as a flat list of ``2 * ndim`` numbers. An empty list is no region. Only
    types and shapes are checked here; the values of the boxes are checked once for the
    batch (``box_flags``).
    """
    width = 2 * ndim
    out: list[torch.Tensor | list[Shape]] = []
    for i, item in enumerate(regions):
        if isinstance(item, (torch.Tensor, np.ndarray)):
            out.append(_box_array(item, f"regions[{i}]", ndim))
        elif isinstance(item, Sequence) and not isinstance(item, str):
            if any(isinstance(obj, Shape) for obj in item):
                out.append(_shapes(item, i, ndim))
            elif len(item) == width and all(_is_number(v) for v in item):
                out.append(torch.tensor([[float(v) for v in item]], dtype=torch.float64))
            else:
                rows = [_box_row(row, f"regions[{i}][{j}]", ndim) for j, row in enumerate(item)]
                out.append(torch.tensor(rows, dtype=torch.float64).reshape(-1, width))
        else:
            raise ArgumentTypeError(
                f"regions[{i}]: expected boxes ({box_order(ndim)}) as a tensor or array "
                f"(K, {width}) or a list, or a list of Box, Ellipse and Polygon, got "
                f"{describe(item)}"
            )
    return out


def _shapes(item: Sequence[object], i: int, ndim: int) -> list[Shape]:
    for j, obj in enumerate(item):
        if not isinstance(obj, Shape):
            raise ArgumentTypeError(
                f"regions[{i}][{j}]: expected a Box, Ellipse or Polygon like the other regions "
                f"of regions[{i}] (a sample's regions are shapes or boxes, not both: write a "
                f"box as Box(xmin, ymin, xmax, ymax)), got {describe(obj)}"
            )
        if ndim != 2:
            raise ArgumentTypeError(
                f"regions[{i}][{j}]: a {type(obj).__name__} is 2-D but the maps are "
                f"{ndim}-D; give volume objects as boxes (K, 6)"
            )
    return list(cast(Sequence[Shape], item))


def from_numpy(regions: object) -> object:
    """``regions`` with a numpy array of the whole batch read as a tensor (masks, padded
    boxes), or as a list of its samples when it holds objects (one array per sample)."""
    if isinstance(regions, np.ndarray):
        return list(regions) if regions.dtype == object else torch.as_tensor(regions)
    return regions


def per_sample(regions: object, shape: Sequence[int]) -> list[torch.Tensor | list[Shape]]:
    """The regions of each of ``shape[0]`` samples, by ``sample_regions``: a list (or
    tuple) with one item per sample, or boxes padded to one tensor ``(N, K, 2 * ndim)``."""
    n, ndim = int(shape[0]), len(shape) - 1
    width = 2 * ndim
    regions = from_numpy(regions)
    if isinstance(regions, torch.Tensor):
        if regions.dtype == torch.bool or regions.ndim != 3 or regions.shape[2] != width:
            raise ArgumentTypeError(
                f"regions: expected a list of one box tensor (K_i, {width}) or shape list per "
                f"map, or boxes padded to one tensor (N, K, {width}) with rows of NaN as "
                f"padding; got a {regions.dtype} tensor of shape {tuple(regions.shape)} (a mask "
                "merges touching objects, so pass them one by one)"
            )
        regions = list(regions.unbind(0))
    if not isinstance(regions, Sequence) or isinstance(regions, str):
        raise ArgumentTypeError(
            "regions: expected the regions of each map (a list of box tensors or of "
            f"Box/Ellipse/Polygon lists, one per map), got {describe(regions)}"
        )
    if len(regions) != n:
        raise ShapeError(
            f"regions: expected the objects of {n} images (one per map), got {len(regions)}",
            (len(regions),),
        )
    return sample_regions(regions, ndim)


def object_lists(
    regions: Objects, shape: Sequence[int]
) -> tuple[list[list[Shape | _Cuboid]], torch.Tensor]:
    """Checked objects of each image of maps of ``shape`` ``(N, *spatial)``, keeping only
    those with a pixel in the image, and their count per image ``(N,)`` (long, CPU). Warns
    when some lie wholly outside their map."""
    lists, counts, _ = objects_of(per_sample(regions, shape), shape[1:])
    return lists, counts


def objects_of(
    items: list[torch.Tensor | list[Shape]], spatial: Sequence[int]
) -> tuple[list[list[Shape | _Cuboid]], torch.Tensor, torch.Tensor]:
    """The objects of each image (from ``sample_regions``) with a pixel in maps of
    ``spatial``, their count per image, and the count of those wholly outside the map per
    image (both ``(N,)``, long, CPU). Box values are checked once for the batch; warns
    when some objects lie wholly outside."""
    spatial = [int(s) for s in spatial]
    ndim = len(spatial)
    # every box of the batch at once: one check of their values
    tensors = [(i, t) for i, t in enumerate(items) if isinstance(t, torch.Tensor)]
    rows = [t.detach().to("cpu", torch.float64) for _, t in tensors]
    boxes = torch.cat(rows) if rows else torch.zeros(0, 2 * ndim, dtype=torch.float64)
    where = [(i, j) for (i, _), t in zip(tensors, rows) for j in range(t.shape[0])]
    padding, bad, _ = box_flags(boxes, spatial).tolist()
    if any(bad):
        refuse_box(boxes, torch.tensor(bad), lambda r: _names(*where[r]))
    lists: list[list[Shape | _Cuboid]] = [
        list(item) if isinstance(item, list) else [] for item in items
    ]
    given: list[list[int]] = [list(range(len(objects))) for objects in lists]
    for (i, j), row, pad in zip(where, boxes.tolist(), padding):
        if not pad:
            lists[i].append(Box._checked(row) if ndim == 2 else _Cuboid(row))
            given[i].append(j)
    flat = [(i, j, o) for i, objects in enumerate(lists) for j, o in zip(given[i], objects)]
    bounds = [o.bounds() if isinstance(o, Shape) else o.row for _, _, o in flat]
    far = box_flags(torch.tensor(bounds, dtype=torch.float64), spatial)[2].tolist() if flat else []
    outside = torch.zeros(len(items), dtype=torch.long)
    if any(far):
        first = far.index(True)
        samples = sorted({i for (i, _, _), f in zip(flat, far) if f})
        i, j, _ = flat[first]
        warn_outside(samples, f"regions[{i}][{j}]", bounds[first], spatial)
        outside.index_add_(0, torch.tensor([i for i, _, _ in flat]), torch.tensor(far).long())
    shapes = [o for _, _, o in flat if isinstance(o, Shape)]
    covered = dict(zip(map(id, shapes), covering(shapes, spatial)))
    lists = [
        [o for o in objects if (covered[id(o)] if isinstance(o, Shape) else o.covers(spatial))]
        for objects in lists
    ]
    return lists, torch.tensor([len(objects) for objects in lists], dtype=torch.long), outside


def _names(i: int, j: int) -> tuple[str, str]:
    return f"regions[{i}]", f"regions[{i}][{j}]"


def match(
    coords: torch.Tensor, usable: torch.Tensor, objects: list[list[Shape | _Cuboid]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy matching of detections to objects, one detection per object.

    Detections ``(N, k, ndim)`` are taken in order; each one lying in an object not yet
    found finds the first such object (in the order given) and is a true positive; any
    other usable detection is a false positive. Returns ``(true positive (N, k), found
    objects per image (N,))``.
    """
    n, k, _ = coords.shape
    most = max((len(o) for o in objects), default=0)
    inside = torch.zeros(n, k, max(most, 1), dtype=torch.bool, device=coords.device)
    # every (image, object) pair at once, one batched test per kind of object
    pairs = [(i, j, obj) for i, image in enumerate(objects) for j, obj in enumerate(image)]
    for flat in (True, False):
        chosen = [(i, j, o) for i, j, o in pairs if isinstance(o, Shape) == flat]
        if not chosen:
            continue
        image = torch.tensor([i for i, _, _ in chosen], device=coords.device)
        slot = torch.tensor([j for _, j, _ in chosen], device=coords.device)
        shapes = [o for _, _, o in chosen]
        points = coords[image]
        inside[image, :, slot] = (
            contains_many(cast(list[Shape], shapes), points)
            if flat
            else _Cuboid.contains_many(cast(list[_Cuboid], shapes), points)
        )
    inside &= usable[:, :, None]
    found = torch.zeros(n, inside.shape[2], dtype=torch.bool, device=coords.device)
    positive = torch.zeros(n, k, dtype=torch.bool, device=coords.device)
    rows = torch.arange(n, device=coords.device)
    for j in range(k):
        open_ = inside[:, j] & ~found
        hit = open_.any(dim=1)
        first = open_.to(torch.uint8).argmax(dim=1)
        found[rows[hit], first[hit]] = True
        positive[:, j] = hit
    return positive, found.sum(dim=1)
