"""One line of a records file, written and read back field by field: the Pointing Game's
fields here, each metric's by its own ``Field``; every value a record cannot hold (a file
edited by hand or by another program) is refused with what is wrong."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from . import plugins
from .fields import BadLine, read_count, read_number
from .record import Record, record_columns


def _hit_text(hit: float) -> str:
    return "" if math.isnan(hit) else str(int(hit)) if hit in (0, 1) else repr(hit)


def _cells(record: Record) -> list[Any]:
    """The fields of ``record`` as the records file writes them, in its columns' order."""
    own = {f.name: f for f in plugins.fields()}
    core = {
        "image": record.image,
        "method": record.method,
        "hit": _hit_text(record.hit),
        "point": "" if record.point is None else " ".join(map(str, record.point)),
        "objects": record.objects,
        "outside": int(record.outside),
        "distance": "" if math.isnan(record.distance) else repr(float(record.distance)),
    }
    return [
        core[name] if name in core else own[name].write(record.value(name))
        for name in record_columns()
    ]


def records_csv(records: Iterable[Record], header: bool = True) -> str:
    """Records as CSV text: ``image, method, hit, point, energy, multi, objects,
    detections, deletion, insertion, outside, distance`` (then the fields of metrics
    registered later).

    ``hit`` is ``1`` or ``0``, empty where the image has no region (not counted), the hit
    probability for the random point; ``point`` the pointed pixel in array order,
    separated by spaces (``"row column"``), empty for the random point; ``energy`` and
    ``multi`` empty when not computed; ``detections`` the peaks for FROC as
    ``score:1`` (true positive) or ``score:0``, separated by spaces; ``deletion`` and
    ``insertion`` the areas under the image's curves, empty when not computed; ``outside``
    ``1`` where a region of the image lies wholly outside its map, else ``0``; ``distance``
    from the point to the regions (``inf`` for a constant map), empty when not counted.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    # csv quotes a field with "\n" but not one with a lone "\r", which a reader splits on:
    # rows with one are written fully quoted
    quoting = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    if header:
        writer.writerow(record_columns())
    for r in records:
        (quoting if "\r" in r.image or "\r" in r.method else writer).writerow(_cells(r))
    return out.getvalue()


def parse_record(row: list[str], methods: Sequence[str] | None, random: str | None) -> Record:
    """One row of a records file, checked field by field (a file edited by hand); any
    method name where ``methods`` is None."""
    columns = record_columns()
    if len(row) != len(columns):
        raise BadLine(f"expected {len(columns)} fields ({', '.join(columns)}), got {len(row)}")
    text = dict(zip(columns, row))
    image, method, hit, point, outside = (
        text[k] for k in ("image", "method", "hit", "point", "outside")
    )
    if outside not in ("0", "1"):
        raise BadLine(f"outside: expected 1 (a region outside the map) or 0, got {outside!r}")
    if methods is not None and method not in methods:
        raise BadLine(f"method: expected one of {list(methods)}, got {method!r}")
    if method == random:
        chance = read_number(hit, "hit", 0, 1)  # the random point's probability
        if point:
            raise BadLine(f"point: expected nothing for the random point, got {point!r}")
        pixel = None
    else:
        if hit not in ("", "0", "1"):
            raise BadLine(f"hit: expected 1 (hit), 0 (miss) or nothing (not counted), got {hit!r}")
        chance = float(hit) if hit else math.nan
        pixel = tuple(read_count(v, "point") for v in point.split(" "))
        if len(pixel) not in (2, 3):
            raise BadLine(f"point: expected 2 or 3 coordinates (a pixel or a voxel), got {point!r}")
    values = {f.name: f.read(text[f.name]) for f in plugins.fields()}
    values["objects"] = read_count(text["objects"], "objects")
    values["outside"] = outside == "1"
    values["distance"] = _distance(text["distance"], method == random)
    return Record.of(image, method, chance, pixel, **values)


def _distance(text: str, random: bool) -> float:
    """A distance ``>= 0`` (``inf``: a constant map) or nothing (not counted)."""
    if not text:
        return math.nan
    if random:
        raise BadLine(f"distance: expected nothing for the random point, got {text!r}")
    if text == "inf":
        return math.inf
    return read_number(text, "distance", 0)
