"""Argument checks shared by every part of normgrad: one rule per kind of argument.

Each check returns the validated value, or raises a [`NormGradError`][normgrad.NormGradError] whose
message names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ._deferred import deferred_checks
from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe


def check_known(names: Sequence[object], known: Sequence[str], argument: str, what: str) -> None:
    """Refuse the ``names`` (of ``what``: metrics, keys) that are not ``known``, all at
    once, naming ``argument``, what it accepts and what arrived."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidArgumentError(
            f"{argument}: unknown {what} {unknown}; expected names among {list(known)}, got "
            f"{list(names)}; rename or remove {unknown}"
        )


def check_input(x: object, argument: str = "x", *, finite: bool = True) -> torch.Tensor:
    """Validate a batch to explain: a finite floating tensor (N, C, H, W) or (N, C, D, H, W).

    ``finite=False`` leaves the values to the caller (who reads a flag later, not now)."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(
            f"{argument}: expected a tensor of shape (N, C, H, W) or (N, C, D, H, W), "
            f"got {describe(x)}"
        )
    if x.ndim not in (4, 5):
        raise ShapeError(
            f"{argument}: expected a 4-D image batch (N, C, H, W) or a 5-D volume batch "
            f"(N, C, D, H, W), got a {x.ndim}-D tensor of shape {tuple(x.shape)}"
            + ("; add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""),
            x.shape,
        )
    if not x.is_floating_point():
        raise ArgumentTypeError(
            f"{argument}: expected a floating point tensor, got dtype {x.dtype}"
        )
    if any(s == 0 for s in x.shape):
        raise ShapeError(
            f"{argument}: expected a non-empty batch, got shape {tuple(x.shape)}", x.shape
        )
    return check_finite_tensor(x, argument) if finite else x


def check_finite_tensor(x: torch.Tensor, argument: str) -> torch.Tensor:
    """A tensor without NaN or infinite values."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InvalidArgumentError(
            f"{argument}: expected finite values, got {bad} NaN or infinite value(s)"
        )
    return x


def check_finite_input(x: torch.Tensor, argument: str = "x") -> None:
    """Raise (when the call's checks are read) if ``x`` holds a NaN or an infinity, with
    the message of ``check_finite_tensor``."""

    def action(largest: list[float]) -> None:
        if not math.isfinite(largest[0]):
            check_finite_tensor(x, argument)

    with deferred_checks() as checks:  # one kernel: the largest magnitude, NaN or inf if any
        checks.add(torch.linalg.vector_norm(x.detach(), math.inf), action)


def check_positive_int(value: object, argument: str, *, odd: bool = False) -> int:
    """An integer (Python or numpy, not a bool) ``>= 1``, odd when ``odd`` is set."""
    what = "an odd positive int" if odd else "a positive int"
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ArgumentTypeError(f"{argument}: expected {what}, got {describe(value)}")
    if value < 1 or (odd and value % 2 == 0):
        raise InvalidArgumentError(f"{argument}: expected {what}, got {value}")
    return int(value)


def check_count(value: object, argument: str) -> int:
    """An integer (Python or numpy, not a bool) ``>= 0``: a number of draws, a seed."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ArgumentTypeError(f"{argument}: expected an int >= 0, got {describe(value)}")
    if value < 0:
        raise InvalidArgumentError(f"{argument}: expected an int >= 0, got {value}")
    return int(value)


def check_kernel_size(value: object, argument: str = "kernel_size") -> int:
    """An odd positive int: the width of a window centred on its position."""
    return check_positive_int(value, argument, odd=True)


def check_number(
    value: object,
    argument: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """A finite real number (not a bool) ``>= low`` (``> low`` when ``open_low``) and
    ``<= high`` (``< high`` when ``open_high``); a bound left out is not checked."""
    if low is not None and high is not None:
        what = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    elif low is not None:
        what = f"a finite number {'>' if open_low else '>='} {low:g}"
    elif high is not None:
        what = f"a finite number {'<' if open_high else '<='} {high:g}"
    else:
        what = "a finite number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{argument}: expected {what}, got {describe(value)}")
    number = float(value)
    inside = math.isfinite(number)
    if low is not None:
        inside = inside and (number > low if open_low else number >= low)
    if high is not None:
        inside = inside and (number < high if open_high else number <= high)
    if not inside:
        raise InvalidArgumentError(f"{argument}: expected {what}, got {value}")
    return number


def check_spacing(spacing: Sequence[float] | None, ndim: int | None = None) -> list[float] | None:
    """Positive finite voxel sizes in array order, ``ndim`` of them when ``ndim`` is known."""
    if spacing is None:
        return None
    layout = {2: "(H, W)", 3: "(D, H, W)"}.get(ndim or 0, "array order")
    try:
        values = [float(s) for s in spacing]
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"spacing: expected a sequence of positive voxel sizes in {layout}, "
            f"got {describe(spacing)}"
        ) from None
    wrong_length = len(values) != ndim if ndim is not None else len(values) not in (2, 3)
    if wrong_length or any(not (s > 0 and math.isfinite(s)) for s in values):
        count = f"{ndim} " if ndim is not None else "2 or 3 "
        raise InvalidArgumentError(
            f"spacing: expected {count}positive voxel sizes in {layout}, got {tuple(spacing)}"
        )
    return values


def check_confidence(value: object, argument: str = "confidence") -> float:
    """A confidence level of an interval: a number in (0, 1)."""
    return check_number(value, argument, low=0, high=1, open_low=True, open_high=True)


def check_tolerance(value: object, argument: str = "tolerance") -> float:
    """A distance such as the Pointing Game's radius: a finite number >= 0."""
    return check_number(value, argument, low=0)


def check_sigma(value: object, argument: str = "sigma") -> float:
    """The standard deviation of a Gaussian: a finite number > 0."""
    return check_number(value, argument, low=0, open_low=True)


def check_sizes(value: object, argument: str) -> tuple[int, ...]:
    """Positive ints along the spatial axes: one int for every axis (a 1-tuple), or one per
    axis in array order (``(H, W)`` or ``(D, H, W)``); the count is checked against the
    input by ``fit_sizes``."""
    values = (value,) if isinstance(value, numbers.Integral) else value
    expected = "a positive int or one per spatial axis, (H, W) or (D, H, W)"
    if (
        not isinstance(values, Sequence)
        or isinstance(values, str)
        or len(values) not in (1, 2, 3)
        or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) for v in values)
    ):
        raise ArgumentTypeError(f"{argument}: expected {expected}, got {describe(value)}")
    if any(v < 1 for v in values):
        raise InvalidArgumentError(f"{argument}: expected {expected}, got {value}")
    return tuple(int(v) for v in values)


def fit_sizes(sizes: tuple[int, ...], spatial: Sequence[int], argument: str) -> list[int]:
    """``sizes`` (from ``check_sizes``) as one int per axis of an input of ``spatial``
    size; a count other than one or ``len(spatial)`` is refused."""
    if len(sizes) == 1:
        return list(sizes) * len(spatial)
    if len(sizes) != len(spatial):
        raise ShapeError(
            f"{argument}: expected one size or {len(spatial)} (one per spatial axis of the "
            f"input of size {tuple(spatial)}), got {sizes}",
            tuple(spatial),
        )
    return list(sizes)
