"""Objects to find, one by one (not their union): shapes or boxes per image, and matching."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union, cast

import torch

from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ._shapes import Box, Shape, contains_many, covering

Objects = Sequence[Union[torch.Tensor, Sequence[Shape]]]
"""The objects of each image: per image a tensor ``(K_i, 4)`` of inclusive boxes
``(xmin, ymin, xmax, ymax)`` (``(K_i, 6)`` with z for volumes), or a sequence of
[`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
[`Polygon`][normgrad.metrics.Polygon] (2-D only); ``K_i = 0``: no object."""


class _Cuboid:
    """An inclusive box in array order, for volumes (the 3-D [`Box`][normgrad.metrics.Box])."""

    def __init__(self, low: Sequence[float], high: Sequence[float]) -> None:
        self.low = torch.tensor(low, dtype=torch.float64)
        self.high = torch.tensor(high, dtype=torch.float64)

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


def _from_boxes(boxes: torch.Tensor, ndim: int, argument: str) -> list[Shape | _Cuboid]:
    width = 2 * ndim
    b = boxes.reshape(0, width) if boxes.numel() == 0 else boxes
    b = b.unsqueeze(0) if b.ndim == 1 else b
    if b.ndim != 2 or b.shape[1] != width:
        raise ShapeError(
            f"{argument}: expected boxes of shape (K, {width}), got shape {tuple(boxes.shape)}",
            boxes.shape,
        )
    rows = b.detach().to("cpu", torch.float64).tolist()
    try:
        if ndim == 2:
            return [Box(*row) for row in rows]
        for row in rows:  # checked like a 2-D Box
            if not all(torch.isfinite(torch.tensor(row))) or any(
                lo > hi for lo, hi in zip(row[:3], row[3:])
            ):
                raise InvalidArgumentError(f"expected finite boxes with min <= max, got {row}")
        return [_Cuboid(row[:3][::-1], row[3:][::-1]) for row in rows]
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"{argument}: {error}") from None


def object_lists(
    regions: Objects, shape: Sequence[int]
) -> tuple[list[list[Shape | _Cuboid]], torch.Tensor]:
    """Checked objects of each image of maps of ``shape`` ``(N, *spatial)``, keeping only
    those with a pixel in the image, and their count per image ``(N,)`` (long, CPU)."""
    n, *spatial = (int(s) for s in shape)
    ndim = len(spatial)
    if isinstance(regions, torch.Tensor) or not isinstance(regions, Sequence):
        raise ArgumentTypeError(
            "regions: expected the objects of each image (a list of box tensors or of "
            f"Box/Ellipse/Polygon lists, one per map), got {describe(regions)}; a mask "
            "merges touching objects, so pass them one by one"
        )
    if len(regions) != n:
        raise ShapeError(
            f"regions: expected the objects of {n} images (one per map), got {len(regions)}",
            (len(regions),),
        )
    lists: list[list[Shape | _Cuboid]] = []
    for i, item in enumerate(regions):
        if isinstance(item, torch.Tensor):
            objects = _from_boxes(item, ndim, f"regions[{i}]")
        elif isinstance(item, Sequence) and not isinstance(item, str):
            objects = []
            for j, obj in enumerate(item):
                if not isinstance(obj, Shape):
                    raise ArgumentTypeError(
                        f"regions[{i}][{j}]: expected a Box, Ellipse or Polygon, got "
                        f"{describe(obj)}"
                    )
                if ndim != 2:
                    raise ArgumentTypeError(
                        f"regions[{i}][{j}]: a {type(obj).__name__} is 2-D but the maps are "
                        f"{ndim}-D; give volume objects as boxes (K, 6)"
                    )
                objects.append(obj)
        else:
            raise ArgumentTypeError(
                f"regions[{i}]: expected a box tensor (K, {2 * ndim}) or a list of shapes, "
                f"got {describe(item)}"
            )
        lists.append(objects)
    shapes = [obj for objects in lists for obj in objects if isinstance(obj, Shape)]
    covered = dict(zip(map(id, shapes), covering(shapes, spatial)))
    lists = [
        [o for o in objects if (covered[id(o)] if isinstance(o, Shape) else o.covers(spatial))]
        for objects in lists
    ]
    return lists, torch.tensor([len(objects) for objects in lists], dtype=torch.long)


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
