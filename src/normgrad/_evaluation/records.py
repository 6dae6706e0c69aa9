"""Per-image records of an evaluation, the table made from them, and the file they go to.

A record is one image scored by one method: the point the map chose, whether it hit
(``1``/``0``; NaN when the image has no region; a probability for the random point).
The table of [`EvaluationResult`][normgrad.EvaluationResult] is computed from the records,
so a run split over processes, or interrupted and resumed, gives the same table as one
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._errors import InvalidArgumentError, describe
from ..metrics import wilson_interval
from ..metrics._accumulator import Mean
from . import plugins
from .fields import BadLine
from .fingerprint import describe_differences
from .record import Record, record_columns
from .record_fields import parse_record, records_csv
from .result import EvaluationResult, MethodScore
from .scoring import CENTER, RANDOM

_MAGIC = "# normgrad evaluate records v3 "
_OLD_MAGICS = ("# normgrad evaluate records v1 ", "# normgrad evaluate records v2 ")


def image_order(image: str) -> tuple[int, int, str, str]:
    """Sort key of image ids: integers (ASCII digits) numerically, then other ids as text.

    Any string has a key (no conversion to ``int`` that could fail: ``"²"`` is a digit to
    ``str.isdigit``, and Python refuses to convert more than 4300 digits)."""
    if image.isascii() and image.isdigit():
        digits = image.lstrip("0")
        return (0, len(digits), digits, image)
    return (1, 0, "", image)


def sort_records(records: Iterable[Record], methods: Sequence[str]) -> list[Record]:
    """Records by image, then in the order of ``methods``."""
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(records, key=lambda r: (image_order(r.image), rank.get(r.method, len(rank))))


def result_of(
    records: Iterable[Record],
    methods: Sequence[str],
    tolerance: float,
    confidence: float,
    metrics: tuple[str, ...],
) -> EvaluationResult:
    """The result of a run from its records: sorted, and its table computed from them."""
    kept = sort_records(records, methods)
    interval = [m != RANDOM for m in methods]
    rows = table(kept, methods, interval, confidence, metrics)
    return EvaluationResult(rows, float(tolerance), confidence, kept, metrics)


def table(
    records: Iterable[Record],
    methods: Sequence[str],
    interval: Sequence[bool],
    confidence: float,
    metrics: Sequence[str] = (),
) -> list[MethodScore]:
    """One row per method: hits over counted images, with a Wilson interval where
    ``interval`` says the hits are counts (not the random point's probabilities), and
    the ``metrics`` asked for, each accumulated from the records in their order by its
    own accumulator (a mean over images; FROC over all the method's detections)."""
    hits = {m: Mean() for m in methods}
    columns = {m: {name: plugins.of(name).accumulator(name) for name in metrics} for m in methods}
    for r in records:
        hits[r.method].update([r.hit])
        for name, accumulator in columns[r.method].items():
            plugins.of(name).add(accumulator, name, r)
    rows = []
    for method, counted in zip(methods, interval):
        h, n = hits[method].total, hits[method].count
        accuracy = h / n if n else float("nan")
        cells = {name: plugins.of(name).cell(acc, name) for name, acc in columns[method].items()}
        if counted:
            low, high = wilson_interval(int(h), n, confidence)
            rows.append(MethodScore.of(method, accuracy, low, high, int(h), n, **cells))
        else:
            nan = float("nan")
            rows.append(MethodScore.of(method, accuracy, nan, nan, h, n, **cells))
    return rows


def _lines(text: str) -> list[str]:
    """``text`` cut after each ``"\\n"`` only (ids may hold ``"\\r"``, ``"\\u2028"``, which
    ``str.splitlines`` would cut at); a last line without one is dropped: the record being
    written when the run stopped."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]]


def _fail(path: Path, line: int, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"records: {str(path)!r} line {line}: {problem}; the file was changed by "
        "hand or by another program: correct or delete that line (its image is then "
        "explained again), or choose another path"
    )


def _read(path: Path, resuming: bool = True) -> tuple[dict[str, Any], list[str]]:
    """A records file's settings and its lines (the first two included). A file of an
    older normgrad whose records have today's columns is read where nothing is resumed."""
    try:
        with path.open(encoding="utf-8", newline="") as f:  # "\r" kept as written
            text = f.read()
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(
            f"records: {str(path)!r} is not UTF-8 text ({e}), so not a normgrad "
            "records file; choose another path"
        ) from None
    lines = _lines(text)
    first = lines[0] if lines else text
    old = next((m for m in _OLD_MAGICS if first.startswith(m)), None)
    if old is not None and not resuming and old == _OLD_MAGICS[-1]:
        first = _MAGIC + first[len(old) :]
    elif old is not None:
        raise InvalidArgumentError(
            f"records: {str(path)!r} was written by an older normgrad (records "
            f"{old.split()[-1]}), whose header does not hold everything that makes the maps "
            "(the explainers' arguments, the model's modules, a checksum of its weights that "
            "sees every change), so resuming it cannot be checked; choose another path, or "
            "delete the file to start again"
        )
    if not first.startswith(_MAGIC):
        raise InvalidArgumentError(
            f"records: {str(path)!r} exists and is not a normgrad records file; choose another path"
        )
    try:
        stated = json.loads(first[len(_MAGIC) :])
    except ValueError as e:
        raise _fail(path, 1, f"the settings are not valid JSON ({e})") from None
    if not isinstance(stated, dict):
        raise _fail(path, 1, f"expected the settings as a JSON object, got {describe(stated)}")
    if "baselines" in stated:  # the setting's name before it was renamed
        stated["reference_rows"] = stated.pop("baselines")
    return stated, lines


# the reference rows' names before they were renamed, read for one release
_RENAMED_ROWS = {"centre baseline": CENTER, "random baseline": RANDOM}


def _records(
    path: Path, lines: list[str], methods: Sequence[str] | None, random: str | None
) -> tuple[list[Record], list[int]]:
    """The records of a file's lines, each checked (any method where ``methods`` is None),
    and the line of each; every point has as many coordinates as the first."""
    header = ",".join(record_columns())
    if len(lines) > 1 and lines[1] != header + "\n":
        raise _fail(path, 2, f"expected the header {header}, got {lines[1]!r}")
    out: list[Record] = []
    where: list[int] = []
    first: tuple[int, int] | None = None  # the first point's coordinates and line
    source = iter(lines[2:])
    reader = csv.reader(source, strict=True)
    while True:
        line = reader.line_num + 3
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if next(source, None) is None:
                break  # a record cut off inside a quoted id, at the end
            raise _fail(path, line, f"not CSV ({e})") from None
        if len(row) > 1:
            row[1] = _RENAMED_ROWS.get(row[1], row[1])
        try:
            record = parse_record(row, methods, random)
        except BadLine as e:
            raise _fail(path, line, str(e)) from None
        if record.point is not None:
            first = first or (len(record.point), line)
            if len(record.point) != first[0]:
                raise _fail(
                    path, line, f"point: expected {first[0]} coordinates as on line "
                    f"{first[1]}, got {len(record.point)} ({row[3]!r})",
                )  # fmt: skip
        out.append(record)
        where.append(line)
    return out, where


def _complete(
    records: Sequence[Record], lines: Sequence[int], methods: Sequence[str]
) -> tuple[dict[str, list[Record]], dict[str, int]]:
    """The images every method recorded, each with one record per method (the last written:
    a file of an older normgrad may hold an image twice), in the order of ``methods``, and
    the line of each image's first record."""
    by_image: dict[str, dict[str, Record]] = {}
    first: dict[str, int] = {}
    for record, line in zip(records, lines):
        by_image.setdefault(record.image, {})[record.method] = record
        first.setdefault(record.image, line)
    wanted = set(methods)
    done = {image: [rs[m] for m in methods] for image, rs in by_image.items() if set(rs) == wanted}
    return done, {image: first[image] for image in done}


def read_records(path: str | os.PathLike[str]) -> EvaluationResult:
    """An earlier run's result, read from the records file ``evaluate(records=...)`` wrote:
    its table, its per-image records and, from their distances, the Pointing Game at any
    tolerance ([`EvaluationResult.curves`][normgrad.EvaluationResult.curves]), without the
    model and without explaining any image again.

    Only images every method recorded are read (a run stopped in the middle of a batch
    leaves some). Methods are in the order the file first names them.

    Args:
        path: the records file (one per rank for a run over several processes: read each,
            or concatenate their ``records``).

    Returns:
        An [`EvaluationResult`][normgrad.EvaluationResult] at the run's tolerance,
        confidence and metrics.
    """
    file = Path(path)
    stated, lines = _read(file, resuming=False)
    records, where = _records(file, lines, None, RANDOM)
    methods = list(dict.fromkeys(r.method for r in records))
    complete, _ = _complete(records, where, methods)
    kept = [r for rs in complete.values() for r in rs]
    metrics = tuple(stated.get("metrics", ()))
    return result_of(kept, methods, stated["tolerance"], float(stated["confidence"]), metrics)


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
        self.lines: dict[str, int] = {}  # the line of each image done, for messages
        if self.path.exists() and self.path.stat().st_size > 0:
            self._load()
        self._rewrite()

    def _load(self) -> None:
        stated, lines = _read(self.path)
        if stated != self.settings:
            changed = describe_differences(self.settings, stated, "the file")
            raise InvalidArgumentError(
                f"records: {str(self.path)!r} was written by an evaluation with other "
                f"settings ({changed} differ); resume with the same explainers, model "
                "weights and arguments, or choose another path"
            )
        random = RANDOM if RANDOM in self.methods else None
        records, where = _records(self.path, lines, self.methods, random)
        self.done, self.lines = _complete(records, where, self.methods)

    def check_points(self, images: Sequence[str], shape: Sequence[int]) -> None:
        """Refuse the file's points of ``images`` unless each is a pixel of a map of
        ``shape`` (the batch's spatial shape): a file edited by hand, or of other data."""
        for image in images:
            for r in self.done.get(image, ()):
                if r.point is None:
                    continue
                if len(r.point) != len(shape) or any(
                    not 0 <= p < n for p, n in zip(r.point, shape)
                ):
                    raise _fail(
                        self.path, self.lines[image], f"point: {r.method}'s point "
                        f"{' '.join(map(str, r.point))} of image {image!r} is not a pixel of "
                        f"its map, of shape {tuple(shape)} (the data's images)",
                    )  # fmt: skip

    def _rewrite(self) -> None:
        """Write the header and the records kept to a temporary file beside the file, then
        replace the file with it in one step: a crash at any point leaves the old file or
        the new one, never a part of either. The temporary has one name per file,
        ``.<name>.tmp``: one left by a process killed while rewriting is removed here. A
        path that is a symbolic link rewrites the file it points to (the link stays)."""
        real = Path(os.path.realpath(self.path))
        real.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for rs in self.done.values() for r in rs]
        text = _MAGIC + json.dumps(self.settings, sort_keys=True) + "\n" + records_csv(kept)
        temporary = real.with_name(f".{real.name}.tmp")
        old = real.stat().st_mode if real.exists() else 0o644
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)  # left by a killed rewrite
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            handle = os.open(temporary, flags, stat.S_IMODE(old))
        except FileExistsError:
            raise InvalidArgumentError(
                f"records: {str(self.path)!r} is being rewritten by another process at the "
                f"same time ({str(temporary)!r} appeared); two runs cannot share a records "
                "file: give each its own path"
            ) from None
        try:
            os.chmod(temporary, stat.S_IMODE(old))  # whatever the umask
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, real)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def append(self, records: Sequence[Record]) -> list[Record]:
        """Add one batch's records (one write, flushed), but for the images the file already
        holds whole (a batch stopped part-way while being appended, done again): those keep
        the file's records. Returns the batch's records as the file now holds them."""
        fresh = [r for r in records if r.image not in self.done]
        out: list[Record] = []
        for image in dict.fromkeys(r.image for r in records):
            out += self.done.get(image, [r for r in fresh if r.image == image])
        if fresh:
            with self.path.open("a", encoding="utf-8", newline="") as f:
                f.write(records_csv(fresh, header=False))
                f.flush()
                os.fsync(f.fileno())
        for r in fresh:
            self.done.setdefault(r.image, []).append(r)
        return out
