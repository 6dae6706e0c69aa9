"""What a metric of ``evaluate`` is: its columns, its record fields, how it scores a batch,
and how its column is accumulated from the records.

A metric scores each method's maps of a batch into per-image values (``score``), which
the batch reads from the device once, with every check (``Batch.later``); the table's
column is its accumulator fed with the records in image order (``accumulator``, ``add``,
``cell``), so a run split over ranks, or resumed, gives the table of one uninterrupted
run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..._transfer import to_device
from ...metrics import Peaks, PreparedRegions
from ...metrics import peaks as find_peaks
from ...metrics._accumulator import Accumulator, Mean
from ..fields import Field

Values = Callable[[], list[Any]]
"""A field's value for each image of the batch, once the batch has been read."""


class Reads:
    """The numbers a batch records, read from the device together."""

    def __init__(self) -> None:
        self._tensors: list[torch.Tensor] = []
        self._values: list[float] = []

    def later(self, tensor: torch.Tensor) -> Later:
        self._tensors.append(tensor.detach())
        return Later(self, len(self._tensors) - 1)

    def packed(self, device: torch.device) -> torch.Tensor:
        """Every tensor recorded, in float64 (exact for the ints and bools too), flat."""
        flat = [to_device(t, device, torch.float64).reshape(-1) for t in self._tensors]
        return torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64, device=device)

    def store(self, values: list[float]) -> None:
        self._values = values

    def values(self, index: int) -> list[Any]:
        start = sum(t.numel() for t in self._tensors[:index])
        tensor = self._tensors[index]
        flat = self._values[start : start + tensor.numel()]
        if tensor.ndim <= 1:
            return flat
        width = math.prod(tensor.shape[1:])
        return [flat[i : i + width] for i in range(0, len(flat), width)]


@dataclass(frozen=True)
class Later:
    """A tensor read with the batch's one read: its values per image afterwards."""

    reads: Reads
    index: int

    def values(self) -> list[Any]:
        """One value (or list of values) per image, as Python numbers."""
        return self.reads.values(self.index)


@dataclass
class Batch:
    """One batch as the metrics see it: the images, the model, the class each explainer
    explained, the regions (prepared once), the run's options (``tolerance``, ``spacing``,
    ``peaks``, ``deletion_options``), the metrics chosen and every method's maps (``maps``,
    by name: searched for peaks once for them all)."""

    model: nn.Module
    x: torch.Tensor
    classes: torch.Tensor | None
    regions: PreparedRegions
    options: Mapping[str, Any]
    metrics: Sequence[EvaluationMetric]
    maps: Mapping[str, torch.Tensor] = field(default_factory=dict)
    reads: Reads = field(default_factory=Reads)
    _found: dict[str, Peaks] = field(default_factory=dict)
    _wanted: list[int] = field(default_factory=list)

    def later(self, tensor: torch.Tensor) -> Later:
        """``tensor`` to be read with the batch's one read."""
        return self.reads.later(tensor)

    def peaks(self, method: str, saliency: torch.Tensor) -> Peaks:
        """The peaks of ``method``'s maps, searched once for every metric that reads them
        (as many as the one wanting most: the first ``k`` of more peaks are the ``k``),
        and for every method of ``maps`` at once: one search, whose reads of the device
        (one per round) do not grow with the methods. A map's peaks do not depend on the
        maps searched beside it."""
        if not self._wanted:  # once per batch
            self._wanted.append(max(metric.peaks_wanted(self) for metric in self.metrics))
        if method not in self._found:
            k, distance = self._wanted[0], self.options["tolerance"]  # in spacing units
            space = self.options["spacing"]
            searched = dict(self.maps) if method in self.maps else {method: saliency}
            found = find_peaks(
                torch.cat(list(searched.values())), k, min_distance=distance, spacing=space
            )
            sizes = [m.shape[0] for m in searched.values()]
            fields = (found.coords, found.values, found.valid)
            parts = zip(*(torch.split(t, sizes) for t in fields))
            self._found.update({name: Peaks(*part) for name, part in zip(searched, parts)})
        return self._found[method]


class EvaluationMetric:
    """A metric ``evaluate`` reports beside the Pointing Game.

    It declares the names it answers to in ``evaluate(metrics=...)`` with their columns'
    headings (``columns``), the per-image ``fields`` it records, whether it reads the
    objects one by one (``needs_objects``: masks are then refused), and how many peaks
    per map it reads; it scores a method's maps of a batch (``score``), and accumulates a
    column from the records (``accumulator``, ``add``, ``cell``). By default a column is
    the mean of the field of its name over the images that have one.
    """

    columns: tuple[tuple[str, str], ...] = ()
    """Each name it answers to in ``evaluate(metrics=...)``, and its column's heading."""
    fields: tuple[Field, ...] = ()
    needs_objects: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The names it answers to in ``evaluate(metrics=...)``, one column each."""
        return tuple(name for name, _ in self.columns)

    def check_images(self, options: Mapping[str, Any], x: torch.Tensor, labels: Any) -> None:
        """Refuse the run's ``options`` where they do not fit a batch's images ``x`` or
        its ``labels`` (as the data gives them), before the batch is explained."""

    def peaks_wanted(self, batch: Batch) -> int:
        """How many peaks per map this metric reads from ``batch.peaks`` (0: none)."""
        return 0

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        """Each field's values for the images of ``batch`` from ``method``'s maps
        ``saliency``; tensors are handed to ``batch.later`` and read after the batch."""
        raise NotImplementedError

    def accumulator(self, name: str) -> Accumulator:
        """A fresh accumulator of the column ``name``."""
        return Mean()

    def add(self, accumulator: Accumulator, name: str, record: Any) -> None:
        """Add one record (a [`Record`][normgrad.Record]) to the column ``name``."""
        assert isinstance(accumulator, Mean)
        accumulator.update([record.value(name)])

    def cell(self, accumulator: Accumulator, name: str) -> float:
        """The column's value, from its accumulator."""
        assert isinstance(accumulator, Mean)
        return accumulator.compute().mean
