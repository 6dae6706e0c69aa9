"""Per-image records of an evaluation, the table made from them, and the file they go to.

A record is one image scored by one method: the point the map chose, whether it hit
(``1``/``0``; NaN when the image has no region; a probability for the random baseline).
The table of [`EvaluationResult`][normgrad.EvaluationResult] is computed from the records,
so a run split over processes, or interrupted and resumed, gives the same table as one
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._errors import InvalidArgumentError
from ..metrics import FROC, wilson_interval
from .fingerprint import describe_differences
from .result import MethodScore, Record, records_csv

_MAGIC = "# normgrad evaluate records v2 "
_OLD_MAGIC = "# normgrad evaluate records v1 "


def image_order(image: str) -> tuple[int, int, str]:
    """Sort key of image ids: integers numerically, then other ids as text."""
    return (0, int(image), image) if image.isdigit() else (1, 0, image)


def sort_records(records: Iterable[Record], methods: Sequence[str]) -> list[Record]:
    """Records by image, then in the order of ``methods``."""
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(records, key=lambda r: (image_order(r.image), rank.get(r.method, len(rank))))


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def table(
    records: Iterable[Record],
    methods: Sequence[str],
    interval: Sequence[bool],
    confidence: float,
    metrics: Sequence[str] = (),
) -> list[MethodScore]:
    """One row per method: hits over counted images, with a Wilson interval where
    ``interval`` says the hits are counts (not the random baseline's probabilities), and
    the ``metrics`` asked for (means over images; FROC over all the method's detections)."""
    hits = dict.fromkeys(methods, 0.0)
    total = dict.fromkeys(methods, 0)
    energy: dict[str, list[float]] = {m: [] for m in methods}
    multi: dict[str, list[float]] = {m: [] for m in methods}
    deletion: dict[str, list[float]] = {m: [] for m in methods}
    insertion: dict[str, list[float]] = {m: [] for m in methods}
    froc = {m: FROC() for m in methods}
    for r in records:
        if not math.isnan(r.hit):
            hits[r.method] += r.hit
            total[r.method] += 1
        energy[r.method].append(r.energy)
        multi[r.method].append(r.multi)
        deletion[r.method].append(r.deletion)
        insertion[r.method].append(r.insertion)
        if "froc" in metrics and r.point is not None:
            scores = torch.tensor([s for s, _ in r.detections], dtype=torch.float64)
            positive = torch.tensor([tp for _, tp in r.detections], dtype=torch.bool)
            froc[r.method].add(scores, positive, images=1, objects=r.objects)
    extra = {
        m: {
            "energy": _mean(energy[m]) if "energy" in metrics else float("nan"),
            "multi": _mean(multi[m]) if "multi" in metrics else float("nan"),
            "deletion": _mean(deletion[m]) if "deletion" in metrics else float("nan"),
            "insertion": _mean(insertion[m]) if "insertion" in metrics else float("nan"),
            "froc": froc[m].compute().froc
            if "froc" in metrics and froc[m].images
            else float("nan"),
        }
        for m in methods
    }
    rows = []
    for method, counted in zip(methods, interval):
        n, h = total[method], hits[method]
        accuracy = h / n if n else float("nan")
        if counted:
            low, high = wilson_interval(int(h), n, confidence)
            rows.append(MethodScore(method, accuracy, low, high, int(h), n, **extra[method]))
        else:
            nan = float("nan")
            rows.append(MethodScore(method, accuracy, nan, nan, h, n, **extra[method]))
    return rows


def _float(text: str) -> float:
    return float(text) if text else float("nan")


def _parse(row: list[str], path: Path, line: int) -> Record:
    try:
        image, method, hit, point, energy, multi, objects, detections, deletion, insertion = row
        found = tuple(
            (float(score), tp == "1") for score, tp in (d.split(":") for d in detections.split())
        )
        return Record(
            image,
            method,
            _float(hit),
            tuple(int(v) for v in point.split()) if point else None,
            _float(energy),
            _float(multi),
            int(objects),
            found,
            _float(deletion),
            _float(insertion),
        )
    except ValueError:
        raise InvalidArgumentError(
            f"records: {str(path)!r} line {line} is not a record ({','.join(row)!r}); "
            "was the file written by normgrad.evaluate?"
        ) from None


class RecordFile:
    """The CSV file an evaluation writes its records to, batch by batch.

    Its first line holds the evaluation's settings; a file that exists is resumed: its
    records are kept for the images whose every method was recorded, the rest are done
    again. Settings that differ from the file's are refused.
    """

    def __init__(
        self, path: str | os.PathLike[str], settings: dict[str, Any], methods: Sequence[str]
    ):
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))
        self.methods = list(methods)
        self.done: dict[str, list[Record]] = {}
        if self.path.exists() and self.path.stat().st_size > 0:
            self._load()
        self._rewrite()

    def _load(self) -> None:
        with self.path.open(encoding="utf-8", newline="") as f:
            first = f.readline()
            if first.startswith(_OLD_MAGIC):
                raise InvalidArgumentError(
                    f"records: {str(self.path)!r} was written by an older normgrad (records "
                    "v1), whose header does not hold the explainers' arguments and the model's "
                    "weights, so resuming it cannot be checked; choose another path, or delete "
                    "the file to start again"
                )
            if not first.startswith(_MAGIC):
                raise InvalidArgumentError(
                    f"records: {str(self.path)!r} exists and is not a normgrad records file; "
                    "choose another path"
                )
            stated = json.loads(first[len(_MAGIC) :])
            if stated != self.settings:
                changed = describe_differences(self.settings, stated, "the file")
                raise InvalidArgumentError(
                    f"records: {str(self.path)!r} was written by an evaluation with other "
                    f"settings ({changed} differ); resume with the same explainers, model "
                    "weights and arguments, or choose another path"
                )
            text = f.read()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # a record cut off by the interruption
        by_image: dict[str, list[Record]] = {}
        for number, row in enumerate(csv.reader(lines[1:]), start=3):
            record = _parse(row, self.path, number)
            by_image.setdefault(record.image, []).append(record)
        wanted = set(self.methods)
        self.done = {
            image: rs
            for image, rs in by_image.items()
            if {r.method for r in rs} == wanted and len(rs) == len(wanted)
        }

    def _rewrite(self) -> None:
        """Write the header and the records kept to a temporary file beside the file, then
        replace the file with it in one step: a crash at any point leaves the old file or
        the new one, never a part of either."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for rs in self.done.values() for r in rs]
        text = _MAGIC + json.dumps(self.settings, sort_keys=True) + "\n" + records_csv(kept)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            old = self.path.stat().st_mode if self.path.exists() else 0o644
            os.chmod(temporary, stat.S_IMODE(old))  # mkstemp made it private
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def append(self, records: Sequence[Record]) -> None:
        """Add one batch's records (one write, flushed)."""
        with self.path.open("a", encoding="utf-8", newline="") as f:
            f.write(records_csv(records, header=False))
            f.flush()
            os.fsync(f.fileno())
        for r in records:
            self.done.setdefault(r.image, []).append(r)
