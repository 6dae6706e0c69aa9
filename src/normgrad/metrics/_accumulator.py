"""Accumulators over a data set: one shape for every metric, ``update``, ``compute``,
``merge``, ``all_reduce`` and ``reset``.

A metric's accumulator holds what it needs of the batches seen (counts, sums, detections);
``merge`` adds another's (of disjoint parts of a data set: the accumulator of the whole),
and ``all_reduce`` does so over the ranks of a ``torch.distributed`` process group, once
here for every metric: each rank's accumulator is gathered and merged in rank order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .._errors import ArgumentTypeError, InvalidArgumentError, describe

_A = TypeVar("_A", bound="Accumulator")


class Accumulator:
    """The shape every accumulator has: ``update`` adds a batch, ``compute`` the result so
    far, ``merge`` another accumulator's batches, ``all_reduce`` every rank's, ``reset``
    forgets them. A subclass says what it holds (``reset``), how two merge (``_merge``)
    and which settings must agree for that (``_settings``)."""

    def reset(self) -> None:
        raise NotImplementedError

    def compute(self) -> Any:
        raise NotImplementedError

    _setting_names: tuple[str, ...] = ()
    """The attributes that must be equal for two accumulators to merge (the metric's
    arguments)."""

    def _settings(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._setting_names)

    def _merge(self: _A, other: _A) -> None:
        raise NotImplementedError

    def merge(self: _A, other: _A) -> _A:
        """Add the batches of ``other`` (same kind and settings) to this accumulator;
        returns ``self``. Accumulators of disjoint parts of a data set merge into the
        accumulator of the whole."""
        if type(other) is not type(self):
            raise ArgumentTypeError(
                f"other: expected a {type(self).__name__}, got {describe(other)}"
            )
        if other._settings() != self._settings():
            raise InvalidArgumentError(
                f"other: expected a {type(self).__name__} with the same "
                f"({', '.join(self._setting_names)}), got {other._settings()} for "
                f"{self._settings()}"
            )
        self._merge(other)
        return self

    def all_reduce(self: _A, group: Any = None) -> _A:
        """Merge the accumulators of every rank of a ``torch.distributed`` process group
        (every rank must call it); afterwards every rank holds the accumulator of all
        ranks' data, merged in rank order. Returns ``self``; without an initialised process
        group it changes nothing."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, self, group=group)
        self.reset()
        for other in gathered:
            self.merge(other)
        return self


@dataclass(frozen=True)
class MeanResult:
    """The mean of the counted values, and how many were counted and left out (NaN)."""

    mean: float
    count: int
    skipped: int


class Mean(Accumulator):
    """The mean of per-image values over a data set, NaN values (images not counted) left
    out: the accumulator of the energy-based and multi-object Pointing Games and of the
    deletion and insertion areas. Values are summed in the order they arrive, in float64.

    Examples:
        >>> import torch
        >>> from normgrad.metrics._accumulator import Mean
        >>> mean = Mean()
        >>> mean.update(torch.tensor([0.5, float("nan"), 1.0]))
        >>> mean.update([0.0])
        >>> mean.compute()
        MeanResult(mean=0.5, count=3, skipped=1)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0
        self.skipped = 0

    def update(self, values: torch.Tensor | Sequence[float]) -> None:
        """Add values ``(N,)`` (NaN: not counted); a tensor is read once."""
        numbers = values.tolist() if isinstance(values, torch.Tensor) else list(values)
        for value in numbers:
            if math.isnan(value):
                self.skipped += 1
            else:
                self.total += value
                self.count += 1

    def _merge(self, other: Mean) -> None:
        self.total += other.total
        self.count += other.count
        self.skipped += other.skipped

    def compute(self) -> MeanResult:
        mean = self.total / self.count if self.count else math.nan
        return MeanResult(mean, self.count, self.skipped)
