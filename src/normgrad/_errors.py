"""Errors raised by normgrad.

Every error normgrad raises on bad input derives from [`NormGradError`][normgrad.NormGradError] and
also from the builtin exception it resembles, so ``except ValueError`` keeps
working in code that does not know normgrad. Messages name the argument, what
was expected and what arrived.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

__all__ = [
    "ArgumentTypeError",
    "InvalidArgumentError",
    "LayerError",
    "NonFiniteError",
    "NormGradError",
    "ShapeError",
    "UnsupportedModelError",
    "warn",
]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class NormGradError(Exception):
    """Base class of every error raised by normgrad on bad input."""


class InvalidArgumentError(NormGradError, ValueError):
    """An argument has the right type but a value normgrad cannot use."""


class ArgumentTypeError(NormGradError, TypeError):
    """An argument has a type normgrad cannot use."""


class LayerError(InvalidArgumentError, LookupError):
    """A layer cannot be found in the model, or does not behave as a layer must."""


class ShapeError(InvalidArgumentError):
    """A tensor has a shape normgrad cannot use; ``actual_shape`` keeps what arrived."""

    def __init__(self, message: str, actual_shape: Sequence[int] | None = None) -> None:
        super().__init__(message)
        self.actual_shape = tuple(actual_shape) if actual_shape is not None else None


class NonFiniteError(InvalidArgumentError, FloatingPointError):
    """The model produced NaN or infinite scores or gradients; the message names the samples."""


class UnsupportedModelError(ArgumentTypeError):
    """The model is built in a way a method cannot run through (TorchScript, checkpointing)."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn``, called by the function that calls
    this one, point at the first stack frame outside the normgrad package (the caller's
    line, not the library's)."""
    frame = sys._getframe(1)  # the function that will call warnings.warn: level 1
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Emit a warning attributed to the caller's line: the first frame outside normgrad.

    Every warning normgrad emits goes through here.
    """
    warnings.warn(message, category, stacklevel=caller_stacklevel())


def warn_renamed(old: str, new: str) -> None:
    """Say that a public name was renamed: the old one works for one more release."""
    warn(
        f"{old} is deprecated and will be removed in the next release; use {new} (the "
        "same thing under its new name)",
        DeprecationWarning,
    )


def describe(value: object) -> str:
    """A short description of ``value`` for error messages."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"
