"""Errors raised by normgrad.

Every error normgrad raises on bad input derives from [`NormGradError`][normgrad.NormGradError] and
also from the builtin exception it resembles, so ``except ValueError`` keeps
working in code that does not know normgrad. Messages name the argument, what
was expected and what arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ArgumentTypeError",
    "InvalidArgumentError",
    "LayerError",
    "NormGradError",
    "ShapeError",
]


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


def describe(value: object) -> str:
    """A short description of ``value`` for error messages."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"
