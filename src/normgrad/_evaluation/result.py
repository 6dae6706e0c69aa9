"""The table an evaluation produces: one row per method, with intervals."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

FIELDS = ["image", "method", "hit", "point"]


@dataclass(frozen=True)
class MethodScore:
    """One row of an evaluation table.

    Attributes:
        method: the explainer's name (or the centre or random baseline's).
        accuracy: Pointing Game accuracy, hits over images with a region.
        low: lower end of the 95% Wilson interval (NaN for the random baseline).
        high: upper end of the 95% Wilson interval (NaN for the random baseline).
        hits: images hit (an expected, fractional count for the random baseline).
        total: images with a region.
    """

    method: str
    accuracy: float
    low: float
    high: float
    hits: float
    total: int


class Record(NamedTuple):
    """One image scored by one method."""

    image: str
    """The image's id: its index in the data, or the id the data gave (as text)."""
    method: str
    hit: float
    """1.0 hit, 0.0 miss, NaN not counted (no region); the random baseline's hit
    probability."""
    point: tuple[int, ...] | None
    """The pointed pixel in array order (``(row, column)``, ``(depth, row, column)``), or
    ``None`` for the random baseline."""


def records_csv(records: Iterable[Record], header: bool = True) -> str:
    """Records as CSV text: ``image, method, hit, point`` (point as ``"row column"``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(FIELDS)
    for r in records:
        hit = (
            ""
            if math.isnan(r.hit)
            else repr(float(r.hit))
            if r.hit not in (0, 1)
            else str(int(r.hit))
        )
        point = "" if r.point is None else " ".join(map(str, r.point))
        writer.writerow([r.image, r.method, hit, point])
    return out.getvalue()


@dataclass(frozen=True)
class EvaluationResult:
    """Pointing Game accuracy per method, with Wilson intervals and the two baselines.

    The random baseline is an exact expectation (the mean over images of the probability
    that a uniformly random point hits), so it has no interval and fractional hits.
    """

    rows: list[MethodScore]
    tolerance: float
    confidence: float
    records: list[Record] = field(default_factory=list)
    """Every image scored by every method, sorted by image then method; the rows are
    computed from them."""

    def __getitem__(self, method: str) -> MethodScore:
        for row in self.rows:
            if row.method == method:
                return row
        raise KeyError(f"no method {method!r} (have: {', '.join(r.method for r in self.rows)})")

    def to_markdown(self) -> str:
        ci = f"{self.confidence:.0%} CI"
        lines = [f"| method | accuracy | {ci} | hits / images |", "| --- | --- | --- | --- |"]
        for r in self.rows:
            interval = "—" if math.isnan(r.low) else f"[{r.low:.3f}, {r.high:.3f}]"
            hits = f"{r.hits:.1f}" if r.hits != int(r.hits) else f"{int(r.hits)}"
            lines.append(f"| {r.method} | {r.accuracy:.3f} | {interval} | {hits} / {r.total} |")
        return "\n".join(lines)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["method", "accuracy", "ci_low", "ci_high", "hits", "images", "tolerance"])
        for r in self.rows:
            writer.writerow([r.method, r.accuracy, r.low, r.high, r.hits, r.total, self.tolerance])
        return out.getvalue()

    def records_to_csv(self) -> str:
        """The per-image records as CSV: ``image, method, hit, point``.

        ``hit`` is ``1`` or ``0``, empty where the image has no region (not counted), the
        hit probability for the random baseline; ``point`` is the pointed pixel in array
        order, separated by spaces (``"row column"``), empty for the random baseline.
        """
        return records_csv(self.records)

    def __str__(self) -> str:
        return self.to_markdown()
