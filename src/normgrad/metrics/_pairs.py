"""Checks of CheXlocalize's settings and pairs: grids searched, the image of each pair, one
pair per image and class."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from .._checks import check_number
from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._transfer import to_device


def check_grid(values: object, argument: str) -> tuple[float, ...]:
    """A non-empty sequence of numbers in $[0, 1]$ (thresholds or probability cutoffs)."""
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidArgumentError(
            f"{argument}: expected a non-empty sequence of numbers in [0, 1] to search, got "
            f"{describe(values)}; pass e.g. (0.2, 0.5, 0.8)"
        )
    return tuple(check_number(v, argument, low=0, high=1) for v in values)


def _refuse_repeats(keys: torch.Tensor, count: int, flags: list[float]) -> None:
    if flags[0]:  # the error path reads which pairs repeat
        first: dict[int, int] = {}
        for j, key in enumerate(keys.tolist()):
            i = first.setdefault(key, j)
            if i != j:
                raise InvalidArgumentError(
                    f"images: expected at most one pair per image and class, got pairs {i} "
                    f"and {j} both of image {key // count} and class {key % count}; pass "
                    "one map per (image, class) pair"
                )


def refuse_repeated_pairs(keys: torch.Tensor, count: int) -> None:
    """Refuse two pairs of one image and class, ``keys`` ``image * count + class``
    ``(M,)``, with the call's other checks."""
    ordered = keys.sort().values
    repeated = (ordered[1:] == ordered[:-1]).any().view(1)
    with deferred_checks() as checks:
        checks.add(repeated, partial(_refuse_repeats, keys, count))


def image_rows(images: object, m: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """The image of each of ``m`` pairs, long ``(m,)`` on ``device``, and the number of
    images (one read: the smallest and largest index)."""
    if (
        not isinstance(images, torch.Tensor)
        or images.is_floating_point()
        or images.is_complex()
        or images.dtype == torch.bool
    ):
        raise ArgumentTypeError(
            f"images: expected the image of each pair as an integer tensor (M,), got "
            f"{describe(images)}"
        )
    if tuple(images.shape) != (m,):
        raise ShapeError(
            f"images: expected one image index per pair, shape ({m},), got shape "
            f"{tuple(images.shape)}",
            images.shape,
        )
    rows = to_device(images, device).long()
    if not m:
        return rows, 0
    low, high = (int(v) for v in torch.stack(torch.aminmax(rows)).tolist())
    if low < 0:
        raise InvalidArgumentError(f"images: expected image indices >= 0, got {low}")
    return rows, high + 1
