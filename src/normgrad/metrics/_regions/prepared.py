"""The one prepared form of regions: every object of a batch, checked and converted once."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

import torch

from ..._deferred import deferred_checks
from ..._errors import ArgumentTypeError, ShapeError
from ..._transfer import to_device
from . import pixels
from .boxes import box_flags, clip, refuse_box, warn_outside
from .forms import SampleRegions, read_forms, region_name
from .pixels import ShapePixels, Window
from .shapes import Shape, rasterize


@dataclass(frozen=True)
class PreparedRegions:
    """The regions of a batch, checked once for maps of one shape on one device.

    Made by [`prepare_regions`][normgrad.metrics.prepare_regions]; every metric accepts it in
    place of the regions (the detection metrics only when it holds objects, not masks), so a
    batch scored by many methods and metrics checks and converts its regions once. It holds
    the objects one by one, sample by sample in the order given: each box as its first and
    last pixel, each shape also as the mask of its pixels within that window (rasterised
    once); their union as masks is derived when a metric asks for it
    ([`to_masks`][normgrad.metrics.PreparedRegions.to_masks]).

    Attributes:
        shape: ``(N, *spatial)``: the maps these regions belong to.
        masks: boolean masks ``(N, *spatial)``, when the regions were given as masks
            (then there are no objects); else ``None``.
        owner: the sample of each object (box or shape) ``(B,)``; empty for masks.
        low: the first pixel of each object's window (its box, or a shape's bounds,
            clipped to the image), array order ``(B, ndim)`` (float64).
        high: the last pixel of each object's window, array order ``(B, ndim)``; below
            ``low`` along some axis when the object has no pixel in the image.
        valid: whether an object covers at least one pixel of the image ``(B,)``.
        outside: which samples have a region wholly outside the map ``(N,)`` (bool;
            ``None``: none have). A sample whose every region is outside has no region
            here (see [`present`][normgrad.metrics.PreparedRegions.present]).
        given: how many objects each sample was given (padding rows included), host
            side: the objects of sample ``i`` are rows ``sum(given[:i])`` on of
            ``owner``.
        shapes: the pixels of each shape with a window in the image (boxes fill theirs).
        outside_count: how many objects of each sample lie wholly outside the map
            ``(N,)`` (long).
    """

    shape: tuple[int, ...]
    masks: torch.Tensor | None
    owner: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    valid: torch.Tensor
    outside: torch.Tensor | None = None
    given: tuple[int, ...] = ()
    shapes: tuple[ShapePixels, ...] = ()
    outside_count: torch.Tensor | None = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to(self, device: torch.device) -> PreparedRegions:
        """These regions on ``device``."""

        def move(t: torch.Tensor | None) -> Any:
            return to_device(t, device) if t is not None else None

        shapes = tuple((row, r, c, to_device(mask, device)) for row, r, c, mask in self.shapes)
        return replace(
            self,
            masks=move(self.masks),
            owner=to_device(self.owner, device),
            low=to_device(self.low, device),
            high=to_device(self.high, device),
            valid=to_device(self.valid, device),
            outside=move(self.outside),
            shapes=shapes,
            outside_count=move(self.outside_count),
            _cache={},
        )

    @property
    def device(self) -> torch.device:
        """Where these regions are."""
        return self.masks.device if self.masks is not None else self.owner.device

    def outside_samples(self) -> torch.Tensor:
        """Which samples have a region wholly outside the map ``(N,)`` (bool)."""
        if self.outside is not None:
            return self.outside
        return torch.zeros(self.shape[0], dtype=torch.bool, device=self.device)

    def present(self) -> torch.Tensor:
        """Which samples have a region ``(N,)`` (bool)."""
        if self.masks is not None:
            return self.masks.flatten(1).any(dim=1)
        return self.counts() > 0

    def counts(self) -> torch.Tensor:
        """How many objects of each sample cover a pixel of the image ``(N,)`` (long)."""
        if self.masks is not None:
            raise ArgumentTypeError(
                "regions: expected the objects one by one (boxes or shapes), got regions "
                "prepared from masks (a mask merges touching objects, so pass them one by one)"
            )
        count = torch.zeros(self.shape[0], dtype=torch.long, device=self.device)
        return count.index_add_(0, self.owner, self.valid.long())

    @property
    def filled(self) -> bool:
        """Whether every object fills its window (boxes only: no masks, no shapes)."""
        return self.masks is None and not self.shapes

    def to_masks(self) -> torch.Tensor:
        """Boolean masks ``(N, *spatial)`` of the regions: the union of each sample's
        objects (derived once, without reading the device)."""
        if self.masks is not None:
            return self.masks
        if "union" not in self._cache:
            self._cache["union"] = pixels.union(self._objects())
        union: torch.Tensor = self._cache["union"]
        return union

    def windows(self) -> list[Window]:
        """Each sample's window (the smallest box holding its objects' pixels) and their
        union within it; the objects' windows are read from the device once."""
        if "windows" not in self._cache:
            self._cache["windows"] = pixels.windows(self._objects())
        found: list[Window] = self._cache["windows"]
        return found

    def _objects(self) -> pixels.Table:
        return pixels.Table(
            self.shape, self.owner, self.low, self.high, self.valid, self.given, self.shapes
        )

    def inside(self, coords: torch.Tensor) -> torch.Tensor:
        """Whether each pixel ``coords`` ``(N, k, ndim)`` (array order) of each sample lies
        in each of its objects ``(N, k, most)``, objects in the order given."""
        self.counts()  # refuses masks
        return pixels.inside(self._objects(), coords)


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
    pixels inside them. Shapes are rasterised once, each within its window. Regions wholly
    outside the map (along some axis, ending before the first pixel or starting after the
    last) raise a ``UserWarning`` naming the samples, the map's size and a region's extent;
    such samples are marked in ``outside``. Box values are checked, and outside boxes
    found, on the maps' device with one read per batch, taken with the calling metric's
    other checks.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import prepare_regions
        >>> boxes = [torch.tensor([[2, 1, 3, 1]]), torch.zeros(0, 4)]
        >>> prepared = prepare_regions(boxes, (2, 4, 5))
        >>> prepared.present().tolist(), int(prepared.to_masks()[0].sum())
        ([True, False], 2)
    """
    return prepare(regions, shape, device)


def prepare(
    regions: Regions,
    shape: Sequence[int],
    device: torch.device | str | None = None,
    one_by_one: bool = False,
    per_class: int = 0,
) -> PreparedRegions:
    """``prepare_regions``; ``one_by_one``: the caller matches objects one by one (the
    detection metrics), so masks, which merge touching objects, are refused; ``per_class``:
    the samples are the (image, class) pairs of regions given per class for ``K`` classes,
    named ``regions[image][class]`` in errors and warnings."""
    shape = tuple(int(s) for s in shape)
    dev = torch.device(device) if device is not None else None
    if isinstance(regions, PreparedRegions):
        if regions.shape != shape:
            raise ShapeError(
                f"regions: expected regions prepared for maps of shape {shape}, got regions "
                f"prepared for {regions.shape}",
                regions.shape,
            )
        if one_by_one:
            regions.counts()  # refuses masks
        return regions.to(dev) if dev is not None else regions
    if 0 in shape[1:]:
        raise ShapeError(
            f"regions: expected maps of at least one pixel, got maps of shape {shape}", shape
        )
    forms = read_forms(regions, shape, one_by_one, per_class)
    if isinstance(forms, torch.Tensor):  # masks
        masks = to_device(forms, dev) if dev is not None else forms
        none = torch.empty(0, dtype=torch.long, device=masks.device)
        window = torch.empty(0, len(shape) - 1, dtype=torch.float64, device=masks.device)
        return PreparedRegions(shape, masks, none, window, window, none.bool())
    return _objects(forms, shape, dev or torch.device("cpu"), per_class)


def _objects(
    items: list[torch.Tensor | list[Shape]],
    shape: tuple[int, ...],
    device: torch.device,
    per_class: int = 0,
) -> PreparedRegions:
    """Every object of the batch as one table, sample by sample: values checked, windows
    clipped, shapes rasterised, regions outside the map found; the checks are read with the
    call's others (``deferred_checks``)."""
    n, spatial = shape[0], shape[1:]
    ndim = len(spatial)
    given = [len(item) if isinstance(item, list) else int(item.shape[0]) for item in items]
    starts = [0, *itertools.accumulate(given)]
    bounds = _bounds([item for item, count in zip(items, given) if count], ndim, device)
    total = starts[-1]
    sizes = to_device(given, device, torch.long)
    owner = torch.repeat_interleave(torch.arange(n, device=device), sizes, output_size=total)
    padding, bad, far = box_flags(bounds, spatial)
    low, high = clip(bounds, spatial)
    usable = (~(padding | bad))[:, None]  # padding and refused rows cover nothing
    low = torch.where(usable, low, torch.zeros_like(low))
    high = torch.where(usable, high, torch.full_like(high, -1))
    valid = (low <= high).all(dim=1)
    rows = [
        starts[i] + j
        for i, item in enumerate(items)
        if isinstance(item, list)
        for j in range(len(item))
    ]
    shapes: list[ShapePixels] = []
    if rows:
        drawn = rasterize(
            [s for item in items if isinstance(item, list) for s in item], spatial, device
        )
        shapes = [(row, w[0], w[1], w[2]) for row, w in zip(rows, drawn) if w is not None]
        if shapes:  # a shape whose window holds none of its pixels covers nothing
            where = to_device([s[0] for s in shapes], device)
            covers = torch.stack([s[3].any() for s in shapes])
            valid = valid.index_put((where,), valid[where] & covers)
    count = torch.zeros(n, dtype=torch.long, device=device).index_add_(0, owner, far.long())
    if total:
        _check_later(bounds, bad, far, count, starts, spatial, per_class)
    return PreparedRegions(
        shape, None, owner, low, high, valid, count > 0, tuple(given), tuple(shapes), count
    )


def _bounds(
    items: list[torch.Tensor | list[Shape]], ndim: int, device: torch.device
) -> torch.Tensor:
    """Every object's bounds ``(B, 2 * ndim)`` in float64 on ``device``: the boxes joined
    where they are (on one device, the usual case), then moved in one copy, so that the
    copies do not grow with the samples."""
    tensors = [item for item in items if isinstance(item, torch.Tensor)]
    where = {t.device for t in tensors}
    home = where.pop() if len(where) == 1 else device
    parts = [
        to_device([s.bounds() for s in item], home, torch.float64)
        if isinstance(item, list)
        else to_device(item.detach(), home, torch.float64)
        for item in items
    ]
    joined = torch.cat(parts) if parts else torch.zeros(0, 2 * ndim, dtype=torch.float64)
    return to_device(joined, device)


def _check_later(
    bounds: torch.Tensor,
    bad: torch.Tensor,
    far: torch.Tensor,
    count: torch.Tensor,
    starts: list[int],
    spatial: Sequence[int],
    per_class: int,
) -> None:
    """Refuse the first bad box, then warn of the regions wholly outside the map, once the
    call's checks are read (one read: the flags, the first outside region and the samples
    with one)."""
    first = far.to(torch.uint8).argmax().view(1)
    flags = torch.stack([bad.any(), far.any()]).double()
    summary = torch.cat([flags, first.double(), bounds.index_select(0, first)[0], count.double()])
    width = bounds.shape[1]

    def where(row: int) -> tuple[int, int]:
        i = bisect.bisect_right(starts, row) - 1
        return i, row - starts[i]

    def name(row: int) -> tuple[str, str]:
        i, j = where(row)
        return region_name(i, per_class), f"{region_name(i, per_class)}[{j}]"

    def act(values: list[float]) -> None:
        if values[0]:
            refuse_box(bounds, bad, name)
        if values[1]:
            i, j = where(int(values[2]))
            samples = [s for s, c in enumerate(values[3 + width :]) if c > 0]
            region = f"{region_name(i, per_class)}[{j}]"
            warn_outside(samples, region, values[3 : 3 + width], spatial, per_class)

    with deferred_checks() as checks:
        checks.add(summary, act)
