"""The table an evaluation produces: one row per method, with intervals."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass


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


@dataclass(frozen=True)
class EvaluationResult:
    """Pointing Game accuracy per method, with Wilson intervals and the two baselines.

    The random baseline is an exact expectation (the mean over images of the probability
    that a uniformly random point hits), so it has no interval and fractional hits.
    """

    rows: list[MethodScore]
    tolerance: float
    confidence: float

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

    def __str__(self) -> str:
        return self.to_markdown()
