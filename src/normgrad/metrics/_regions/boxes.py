"""Boxes given as numbers: the one check of their values, their pixels, and regions wholly
outside their map.

Every region reads its box through here (box tensors and arrays, the bounds of
[`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
[`Polygon`][normgrad.metrics.Polygon]), so a box is refused, clipped to its map, or found
outside it by one rule wherever it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

import torch

from ..._errors import InvalidArgumentError, warn
from ..._transfer import to_device

# the samples named in the warning about regions outside their maps, at most
_NAMED = 10


def box_order(ndim: int) -> str:
    """The coordinates of a box of ``ndim`` dimensions, in the order they are given."""
    return "xmin, ymin, xmax, ymax" if ndim == 2 else "xmin, ymin, zmin, xmax, ymax, zmax"


def box_flags(boxes: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """For boxes ``(B, 2 * ndim)`` ``(xmin, ymin[, zmin], xmax, ymax[, zmax])``, float64: which
    are padding (all NaN), bad (not padding, and not finite or with a min above its max) and
    wholly outside a map of ``spatial`` (array order) ``(3, B)`` (bool, on the boxes' device,
    nothing read back).

    A box is wholly outside its map when along some axis it ends before the first pixel
    centre or starts after the last (``xmax < 0`` or ``xmin > W - 1``, and so on): it covers
    no pixel however it is clipped. (A box between two pixel centres inside the map covers
    no pixel either, but is not outside.)
    """
    ndim = len(spatial)
    padding = torch.isnan(boxes).all(dim=1)
    low, high = boxes[:, :ndim], boxes[:, ndim:]
    wrong = ~torch.isfinite(boxes).all(dim=1) | (low > high).any(dim=1)
    bad = wrong & ~padding
    last = to_device([s - 1 for s in reversed(spatial)], boxes.device, boxes.dtype)
    outside = ((high < 0) | (low > last)).any(dim=1) & ~wrong
    return torch.stack([padding, bad, outside])


def clip(boxes: torch.Tensor, spatial: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and last pixel ``(B, ndim)`` (array order, float64) of each box ``(B, 2 *
    ndim)`` ``(xmin, ymin[, zmin], xmax, ymax[, zmax])`` within a map of ``spatial``: a box
    covers the integer pixels inside it, clipped to the map; it covers none where
    ``low > high`` along some axis."""
    ndim = len(spatial)
    # box coordinates are (x, y[, z]); array order is ([z,] y, x)
    low = boxes[:, :ndim].flip(1).ceil().clamp_min(0)
    last = to_device([s - 1 for s in spatial], boxes.device, boxes.dtype)
    high = torch.minimum(boxes[:, ndim:].flip(1).floor(), last)
    return low, high


def refuse_box(
    boxes: torch.Tensor, bad: torch.Tensor, name: Callable[[int], tuple[str, str]], hint: str = ""
) -> NoReturn:
    """Raise for the first of ``bad`` ``(B,)`` (one at least) of ``boxes`` ``(B, 2 * ndim)``;
    ``name(row)`` gives the argument and the row's own name (empty when it has none)."""
    row = int(bad.to(torch.uint8).argmax())
    argument, label = name(row)
    values = boxes[row].tolist()
    got = f"{label} = {values}" if label else f"{values}"
    raise InvalidArgumentError(
        f"{argument}: expected finite boxes ({box_order(boxes.shape[1] // 2)}) with min <= max "
        f"for every coordinate, got {got}{hint}"
    )


def check_box(values: Sequence[float], argument: str, hint: str = "") -> None:
    """Refuse one box ``values`` ``(xmin, ymin, xmax, ymax)`` that is not finite or has a
    min above its max, naming ``argument`` (as ``box_flags`` and ``refuse_box`` do for many)."""
    box = torch.tensor([values], dtype=torch.float64)
    padding, bad, _ = box_flags(box, [1] * (len(values) // 2))
    if bool(bad[0] or padding[0]):
        refuse_box(box, torch.ones(1, dtype=torch.bool), lambda _: (argument, ""), hint)


def _span(values: Sequence[float]) -> str:
    ndim = len(values) // 2
    return ", ".join(
        f"{axis} {values[a]:g} to {values[a + ndim]:g}" for a, axis in enumerate("xyz"[:ndim])
    )


def warn_outside(
    samples: Sequence[int],
    region: str,
    bounds: Sequence[float],
    spatial: Sequence[int],
    per_class: int = 0,
) -> None:
    """Warn that the regions of ``samples`` (those with a region wholly outside the map)
    lie outside maps of ``spatial``; ``region`` names the first such region and ``bounds``
    its extent ``(xmin, ymin[, zmin], xmax, ymax[, zmax])``. With ``per_class`` = K the
    samples are (image, class) pairs, sample-major, and are named so."""
    size = " x ".join(str(s) for s in reversed(spatial))  # W x H (x D)
    shown = [f"({i // per_class}, {i % per_class})" if per_class else str(i) for i in samples]
    named = ", ".join(shown[:_NAMED])
    more = f" and {len(samples) - _NAMED} more" if len(samples) > _NAMED else ""
    which = "(image, class) pairs" if per_class else "samples"
    warn(
        f"regions: {which} [{named}]{more} have regions wholly outside their map of "
        f"{size} pixels (width x height{' x depth' if len(spatial) == 3 else ''}), e.g. "
        f"{region} spans {_span(bounds)}; such a region covers nothing, and a sample whose "
        "every region is outside is not counted. Regions are in the maps' pixels: if they are "
        "in the original image's, rescale them to the map (x * map width / image width, "
        "y * map height / image height) or give maps of the image's size"
    )
