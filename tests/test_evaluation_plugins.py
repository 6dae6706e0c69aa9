"""A metric added to ``evaluate`` as one module and one registration: its column, its
records (in memory, as CSV, in a records file read back) and its table follow; and every
accumulator has one shape (update, compute, merge, all_reduce)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import normgrad
from normgrad import metrics
from normgrad._evaluation import plugins
from normgrad._evaluation.fields import number
from normgrad._evaluation.plugins.base import Batch, EvaluationMetric, Values
from normgrad.metrics._accumulator import Mean

from .models import TinyCNN, seeded

SIZE = 12


class Brightest(EvaluationMetric):
    """A new metric, as a module would declare it: each map's largest value."""

    columns = (("brightest", "largest value"),)
    fields = (number("brightest"),)

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        largest = batch.later(saliency.flatten(1).amax(dim=1))
        return {"brightest": largest.values}


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "REGISTRY", (*plugins.REGISTRY, Brightest()))


def _data() -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(4)
    out = []
    for _ in range(2):
        x = torch.randn(3, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        boxes = [torch.tensor([[1, 1, 5, 5]]), torch.zeros(0, 4), torch.tensor([[6, 2, 9, 8]])]
        out.append((x, torch.tensor([0, 1, 2]), boxes))
    return out


def test_a_registered_metric_is_a_column_a_record_field_and_a_records_column(
    registered: None, tmp_path: Path
) -> None:
    model = seeded(TinyCNN()).double()
    explainer = normgrad.Gradient(model)
    path = tmp_path / "records.csv"
    kwargs: dict[str, Any] = {"tolerance": 2, "progress": False, "metrics": ("brightest",)}
    result = normgrad.evaluate(model, {"Gradient": explainer}, _data(), records=path, **kwargs)
    # by hand: the maps of each batch, their largest values, their mean
    largest = [
        float(v) for x, labels, _ in _data() for v in explainer(x, labels).flatten(1).amax(dim=1)
    ]
    records = [r for r in result.records if r.method == "Gradient"]
    assert [r.value("brightest") for r in records] == largest
    assert result["Gradient"].value("brightest") == sum(largest) / len(largest)
    random = [r for r in result.records if r.method == "random point"]
    assert all(math.isnan(r.value("brightest")) for r in random)
    assert "| largest value |" in result.to_markdown().splitlines()[0]
    assert result.to_csv().splitlines()[0].endswith(",brightest")
    assert (
        result.records_to_csv().splitlines()[0].endswith(",distance,iou,hit_rate,auprc,brightest")
    )
    again = normgrad.read_records(path)
    assert [r.value("brightest") for r in again.records if r.method == "Gradient"] == largest
    assert again["Gradient"].value("brightest") == result["Gradient"].value("brightest")
    resumed = normgrad.evaluate(
        model, {"Gradient": explainer}, _data(), records=path, **kwargs
    )  # nothing explained again: the file holds every image
    assert _canon(resumed.records) == _canon(result.records)


def _canon(records: list[normgrad.Record]) -> list[str]:
    return [repr(r) for r in records]  # NaN reads as nan, equal to itself


def test_an_unregistered_name_is_refused_naming_the_registered_ones() -> None:
    model = seeded(TinyCNN()).double()
    with pytest.raises(normgrad.InvalidArgumentError, match="'energy', 'froc'"):
        normgrad.evaluate(model, {"g": normgrad.Gradient(model)}, _data(), metrics=["brightest"])


def _accumulators() -> dict[str, tuple[Any, Any]]:
    """Per accumulator: a fresh one, and how a batch is added to it."""
    gen = torch.Generator().manual_seed(2)
    maps = torch.rand(6, 1, 10, 10, generator=gen)
    boxes = [torch.tensor([[1.0, 1.0, 4.0, 5.0]])] * 3 + [torch.tensor([[5.0, 5.0, 9.0, 9.0]])] * 3
    values = torch.rand(6, generator=gen).double()
    values[2] = math.nan
    return {
        "PointingGame": (lambda: metrics.PointingGame(tolerance=2), lambda a, s: a.update(maps[s], boxes[s])),
        "FROC": (lambda: metrics.FROC(k=3, min_distance=2), lambda a, s: a.update(maps[s], boxes[s])),
        "Mean": (Mean, lambda a, s: a.update(values[s])),
    }  # fmt: skip


def _state(accumulator: Any) -> Any:
    result = accumulator.compute()
    if isinstance(result, metrics.FROCResult):
        result = (result.froc, result.sensitivity.tolist(), result.images, result.objects)
    return repr(result)  # NaN reads as nan, equal to itself


@pytest.mark.parametrize("name", ["PointingGame", "FROC", "Mean"])
def test_every_accumulator_merges_into_the_accumulator_of_the_whole(name: str) -> None:
    make, add = _accumulators()[name]
    whole, first, second = make(), make(), make()
    add(whole, slice(0, 6))
    add(first, slice(0, 4))
    add(second, slice(4, 6))
    assert first.merge(second) is first
    assert _state(first) == _state(whole)
    assert first.all_reduce() is first and _state(first) == _state(whole)  # no group
    first.reset()
    assert _state(first) == _state(make())
    with pytest.raises(normgrad.ArgumentTypeError, match="other: expected a"):
        first.merge(3)
