"""The table an evaluation produces: one row per method, with intervals."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from ..metrics import PointingGameCurve, pointing_game_curve
from . import plugins
from .record import Record as Record
from .record_fields import records_csv


@dataclass(frozen=True)
class MethodScore:
    """One row of an evaluation table.

    Attributes:
        method: the explainer's name (or the centre or random point's).
        accuracy: Pointing Game accuracy, hits over images with a region.
        low: lower end of the Wilson interval at the result's ``confidence`` (NaN for the
            random point).
        high: upper end of the Wilson interval (NaN for the random point).
        hits: images hit (an expected, fractional count for the random point).
        total: images with a region.
        energy: mean energy-based Pointing Game over the images with a region (NaN when
            not asked for, and for the random point).
        multi: mean fraction of objects found by the top-K peaks, over the images with an
            object (multi-object Pointing Game; NaN when not asked for).
        froc: Object-CXR FROC of the maps' peaks over the data set (NaN when not asked
            for).
        deletion: mean area under the deletion curve (lower is better; NaN when not asked
            for).
        insertion: mean area under the insertion curve (higher is better; NaN when not
            asked for).
        more: the columns of metrics registered after these, as ``(name, value)`` pairs
            (read them with ``value``).
    """

    method: str
    accuracy: float
    low: float
    high: float
    hits: float
    total: int
    energy: float = float("nan")
    multi: float = float("nan")
    froc: float = float("nan")
    deletion: float = float("nan")
    insertion: float = float("nan")
    more: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(
        cls,
        method: str,
        accuracy: float,
        low: float,
        high: float,
        hits: float,
        total: int,
        **columns: float,
    ) -> MethodScore:
        """A row with ``columns`` by name (the others NaN)."""
        own = {f.name for f in fields(cls)}
        known = {k: v for k, v in columns.items() if k in own}
        more = tuple((k, v) for k, v in columns.items() if k not in own)
        return cls(method, accuracy, low, high, hits, total, **known, more=more)

    def value(self, column: str) -> float:
        """The column ``column`` (a name of ``evaluate(metrics=...)``), NaN where not
        reported."""
        if column in {f.name for f in fields(self)}:
            found: float = getattr(self, column)
            return found
        return dict(self.more).get(column, math.nan)


@dataclass(frozen=True)
class EvaluationResult:
    """Pointing Game accuracy per method, with Wilson intervals and the two reference rows.

    The random point is an exact expectation (the mean over images of the probability
    that a uniformly random point hits), so it has no interval and fractional hits.

    Attributes:
        rows: the table, one [`MethodScore`][normgrad.MethodScore] per row: each
            explainer, then each smoothed one (when asked for), then the centre and
            random points (when asked for).
        tolerance: the Pointing Game's radius, in pixels (or ``spacing`` units).
        confidence: the level of the Wilson intervals, in (0, 1).
        records: every image scored by every method
            ([`Record`][normgrad.Record]), sorted by image then method; the rows are
            computed from them.
        metrics: the metrics reported beside the Pointing Game (names of
            ``evaluate(metrics=...)``).
    """

    rows: list[MethodScore]
    tolerance: float
    confidence: float
    records: list[Record] = field(default_factory=list)
    metrics: tuple[str, ...] = ()

    @property
    def outside(self) -> tuple[str, ...]:
        """The ids of the images with a region wholly outside its map, in image order
        (those whose every region is outside are not counted: see ``not_counted``)."""
        return tuple(dict.fromkeys(r.image for r in self.records if r.outside))

    @property
    def not_counted(self) -> tuple[str, ...]:
        """The ids of the images not counted (no region, or none left inside the map), in
        image order."""
        counted = {r.image for r in self.records if not math.isnan(r.hit)}
        return tuple(i for i in dict.fromkeys(r.image for r in self.records) if i not in counted)

    def distances(self) -> dict[str, list[float]]:
        """Each method's distances from its points to the regions, image by image in the
        records' order (see ``Record.distance``); the random point has no point, so
        none."""
        out: dict[str, list[float]] = {}
        for r in self.records:
            if r.point is not None:
                out.setdefault(r.method, []).append(r.distance)
        return out

    def curves(
        self,
        tolerances: Sequence[float] | None = None,
        *,
        max_tolerance: float | None = None,
    ) -> dict[str, PointingGameCurve]:
        """Each method's Pointing Game at every tolerance, read from the records' distances:
        no image is explained again (also for a run read back with
        [`read_records`][normgrad.read_records]).

        Args:
            tolerances: where the hit rate is read, in pixels (or ``spacing`` units), as for
                [`pointing_game_curve`][normgrad.metrics.pointing_game_curve].
            max_tolerance: the upper end of the normalised area; default: the largest of
                ``tolerances``.

        Returns:
            method -> [`PointingGameCurve`][normgrad.metrics.PointingGameCurve], in the
            rows' order; the random point has no point, so no distance, and no curve
            (its exact rate at any tolerance is
            [`random_point_hit_rate`][normgrad.metrics.random_point_hit_rate]).
        """
        distances = self.distances()
        return {
            row.method: pointing_game_curve(
                distances[row.method],
                tolerances=tolerances,
                max_tolerance=max_tolerance,
                confidence=self.confidence,
            )
            for row in self.rows
            if row.method in distances
        }

    def __getitem__(self, method: str) -> MethodScore:
        for row in self.rows:
            if row.method == method:
                return row
        raise KeyError(f"no method {method!r} (have: {', '.join(r.method for r in self.rows)})")

    def to_markdown(self) -> str:
        ci = f"{self.confidence:.0%} CI"
        headings = plugins.columns()
        extra = [headings[m] for m in self.metrics]
        head = ["method", "accuracy", ci, "hits / images", *extra]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in self.rows:
            interval = "—" if math.isnan(r.low) else f"[{r.low:.3f}, {r.high:.3f}]"
            hits = f"{r.hits:.1f}" if r.hits != int(r.hits) else f"{int(r.hits)}"
            values = [r.value(m) for m in self.metrics]
            cells = [r.method, f"{r.accuracy:.3f}", interval, f"{hits} / {r.total}"]
            cells += ["—" if math.isnan(v) else f"{v:.3f}" for v in values]
            lines.append("| " + " | ".join(cells) + " |")
        if self.outside:
            lines.append(f"\n{outside_note(self.outside, self.not_counted)}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        head = ["method", "accuracy", "ci_low", "ci_high", "hits", "images", "tolerance"]
        writer.writerow(head + list(self.metrics))
        for r in self.rows:
            row = [r.method, r.accuracy, r.low, r.high, r.hits, r.total, self.tolerance]
            writer.writerow(row + [r.value(m) for m in self.metrics])
        return out.getvalue()

    def records_to_csv(self) -> str:
        """The per-image records as CSV: ``image, method, hit, point, energy, multi,
        objects, detections, deletion, insertion, outside, distance``.

        ``hit`` is ``1`` or ``0``, empty where the image has no region (not counted), the
        hit probability for the random point; ``point`` the pointed pixel in array
        order, separated by spaces (``"row column"``), empty for the random point;
        ``energy`` and ``multi`` empty when not computed; ``detections`` the peaks for
        FROC as ``score:1`` (a true positive) or ``score:0``, separated by spaces;
        ``deletion`` and ``insertion`` the areas under the image's curves; ``outside`` ``1``
        where a region of the image lies wholly outside its map; ``distance`` from the point
        to the regions (see ``Record.distance``).
        """
        return records_csv(self.records)

    def __str__(self) -> str:
        return self.to_markdown()


def outside_note(outside: Sequence[str], not_counted: Sequence[str]) -> str:
    """What to say of the images with a region wholly outside its map."""
    lost = [i for i in outside if i in set(not_counted)]
    shown = ", ".join(repr(i) for i in outside[:5]) + (", ..." if len(outside) > 5 else "")
    return (
        f"{len(outside)} image(s) have a region wholly outside their map ({shown}), "
        f"{len(lost)} of them not counted (no region left inside): regions in the original "
        "image's coordinates while the images were resized? (result.outside lists them)"
    )
