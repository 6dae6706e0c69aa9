"""The pixels of objects objects, in the three forms the metrics read: the union of each
sample's objects as masks, each sample's window with the union in it, and which objects a
pixel lies in."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch

from ..._transfer import to_device

ShapePixels = tuple[int, int, int, torch.Tensor]
"""A shape's pixels: its row among the objects, the first row and column of its window
(its bounds clipped to the map) and the mask of its pixels there."""

Window = Optional[tuple[tuple[slice, ...], Optional[torch.Tensor]]]
"""Per sample: the bounding window of its objects, and their union within it (None: all of
it); None for a sample without an object."""


@dataclass(frozen=True)
class Table:
    """The objects of a batch of maps of ``shape`` ``(N, *spatial)``, sample by sample: the
    sample of each ``owner`` ``(B,)``, its window ``low`` to ``high`` ``(B, ndim)``
    (float64, array order), whether it covers a pixel ``valid`` ``(B,)``, how many each
    sample was ``given`` (host), and the pixels of the ``shapes`` in their windows."""

    shape: tuple[int, ...]
    owner: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    valid: torch.Tensor
    given: Sequence[int]
    shapes: Sequence[ShapePixels]

    def shape_rows(self) -> torch.Tensor:
        """Which objects are shapes ``(B,)`` (bool): their pixels are a mask in the window."""
        device = self.owner.device
        shapes = torch.zeros(self.owner.shape[0], dtype=torch.bool, device=device)
        if self.shapes:
            rows = to_device([row for row, *_ in self.shapes], device)
            shapes[rows] = True
        return shapes

    def sample_of(self) -> list[int]:
        """The sample of each object, host side."""
        return [i for i, count in enumerate(self.given) for _ in range(count)]


def union(objects: Table) -> torch.Tensor:
    """Masks ``(N, *spatial)`` of the union of each sample's objects, built without reading
    the device: boxes as corners summed over the grid (each box adds 1 inside it, 0 beyond),
    shapes pasted into their windows."""
    n, *spatial = objects.shape
    ndim = len(spatial)
    device = objects.owner.device
    filled = objects.valid & ~objects.shape_rows()
    low = torch.where(filled[:, None], objects.low, 0).long()
    end = torch.where(filled[:, None], objects.high + 1, 0).long()  # one past the last
    weight = filled.int()
    edges = torch.zeros((n, *(s + 1 for s in spatial)), dtype=torch.int32, device=device)
    for corner in itertools.product((0, 1), repeat=ndim):
        index = tuple(end[:, a] if at_end else low[:, a] for a, at_end in enumerate(corner))
        sign = -1 if sum(corner) % 2 else 1
        edges.index_put_((objects.owner, *index), sign * weight, accumulate=True)
    for axis in range(1, ndim + 1):
        edges = edges.cumsum(axis, dtype=torch.int32)
    out = edges[(slice(None), *(slice(0, s) for s in spatial))] > 0
    sample = objects.sample_of()
    for row, r0, c0, mask in objects.shapes:
        h, w = mask.shape
        out[sample[row], r0 : r0 + h, c0 : c0 + w] |= mask
    return out


def windows(objects: Table) -> list[Window]:
    """The window of each sample's objects (array order, inclusive pixels) and their union
    within it (None: a single box fills it); the objects' windows are read in one go."""
    ndim = len(objects.shape) - 1
    columns = [objects.low, objects.high, objects.valid[:, None].double()]
    table = torch.cat(columns, dim=1).tolist() if objects.owner.numel() else []  # one read
    masks = {row: mask for row, _, _, mask in objects.shapes}
    by_sample: list[list[tuple[list[int], list[int], torch.Tensor | None]]] = [
        [] for _ in objects.given
    ]
    for row, (sample, values) in enumerate(zip(objects.sample_of(), table)):
        if values[-1]:
            low = [int(v) for v in values[:ndim]]
            high = [int(v) for v in values[ndim : 2 * ndim]]
            by_sample[sample].append((low, high, masks.get(row)))
    out: list[Window] = []
    for found in by_sample:
        if not found:
            out.append(None)
            continue
        first = [min(low[a] for low, _, _ in found) for a in range(ndim)]
        last = [max(high[a] for _, high, _ in found) for a in range(ndim)]
        where = tuple(slice(a, b + 1) for a, b in zip(first, last))
        if len(found) == 1 and found[0][2] is None:
            out.append((where, None))
            continue
        size = [b - a + 1 for a, b in zip(first, last)]
        inside = torch.zeros(size, dtype=torch.bool, device=objects.owner.device)
        for low, high, mask in found:
            part = tuple(slice(a - f, b - f + 1) for a, b, f in zip(low, high, first))
            if mask is None:
                inside[part] = True
            else:
                inside[part] |= mask
        out.append((where, inside))
    return out


def inside(objects: Table, coords: torch.Tensor) -> torch.Tensor:
    """Whether each pixel ``coords`` ``(N, k, ndim)`` (array order, int64) lies in each
    object of its sample ``(N, k, most)``, objects in the order given (``most``: the most
    objects a sample was given); no read of the device."""
    n, k, _ = coords.shape
    device = coords.device
    most = max(objects.given, default=0)
    out = torch.zeros(n, k, max(most, 1), dtype=torch.bool, device=device)
    owner = to_device(objects.owner, device)
    if owner.numel() == 0:
        return out
    given = to_device(objects.given, device, torch.long)
    slot = torch.arange(owner.numel(), device=device) - (given.cumsum(0) - given)[owner]
    points = coords[owner]  # (B, k, ndim)
    low, high = to_device(objects.low, device), to_device(objects.high, device)
    hit = (points >= low[:, None]) & (points <= high[:, None])
    hit = hit.all(dim=2) & to_device(objects.valid, device)[:, None]
    if objects.shapes:  # in a shape's window, its mask says
        rows = to_device([row for row, *_ in objects.shapes], device)
        widths = [mask.shape[1] for *_, mask in objects.shapes]
        sizes = to_device([mask.numel() for *_, mask in objects.shapes], device)
        flat = torch.cat([to_device(mask.reshape(-1), device) for *_, mask in objects.shapes])
        local = points[rows] - low[rows].long()[:, None]  # (S, k, 2)
        width = to_device(widths, device)[:, None]
        index = (sizes.cumsum(0) - sizes)[:, None] + local[..., 0] * width + local[..., 1]
        looked = flat.take(index.clamp(0, flat.numel() - 1))
        hit[rows] = hit[rows] & looked
    out[owner, :, slot] = hit
    return out
