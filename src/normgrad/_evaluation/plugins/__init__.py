"""The metrics ``evaluate`` reports beside the Pointing Game, one module each, registered
once here: a new metric is a module with an ``EvaluationMetric`` and a line in
``REGISTRY``; its columns, record fields, records file columns and table follow."""

from __future__ import annotations

from collections.abc import Iterable

from ..fields import Field
from .base import EvaluationMetric
from .deletion import DeletionInsertion
from .energy import EnergyPointingGame
from .froc import FROCMetric
from .localization import Localization
from .multi import MultiPointingGame

REGISTRY: tuple[EvaluationMetric, ...] = (
    EnergyPointingGame(),
    MultiPointingGame(),
    FROCMetric(),
    DeletionInsertion(),
    Localization(),
)
"""Every metric ``evaluate`` can report, in the order of their columns."""


def columns() -> dict[str, str]:
    """Every name ``evaluate(metrics=...)`` accepts, and its column's heading."""
    return {name: heading for m in REGISTRY for name, heading in m.columns}


def serving(names: Iterable[str]) -> list[EvaluationMetric]:
    """The metrics serving ``names``, each once, in the registry's order."""
    wanted = set(names)
    return [m for m in REGISTRY if wanted & set(m.names)]


def of(name: str) -> EvaluationMetric:
    """The metric serving the column ``name``."""
    return next(m for m in REGISTRY if name in m.names)


def fields() -> list[Field]:
    """Every metric's record fields, in the registry's order."""
    return [f for m in REGISTRY for f in m.fields]
