"""One line of a records file read back, field by field: every value a record cannot hold
(a file edited by hand or by another program) is refused with what is wrong."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .result import FIELDS, Record


class BadLine(Exception):
    """A line of a records file that is not a record: what is wrong with it."""


def _float(text: str, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A field holding a finite number in ``[low, high]``, or nothing (NaN)."""
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high or math.isinf(value):
        bounds = "" if math.isinf(low) and math.isinf(high) else f" in [{low:g}, {high:g}]"
        raise BadLine(f"{what}: expected a finite number{bounds} or nothing, got {text!r}")
    return value


def _count(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise BadLine(f"{what}: expected an int >= 0, got {text!r}")
    return int(text)


def parse_record(row: list[str], methods: Sequence[str] | None, random: str | None) -> Record:
    """One row of a records file, checked field by field (a file edited by hand); any
    method name where ``methods`` is None."""
    if len(row) != len(FIELDS):
        raise BadLine(f"expected {len(FIELDS)} fields ({', '.join(FIELDS)}), got {len(row)}")
    image, method, hit, point, energy, multi, objects, detections, deletion, insertion = row[:10]
    outside, distance = row[10:]
    if outside not in ("0", "1"):
        raise BadLine(f"outside: expected 1 (a region outside the map) or 0, got {outside!r}")
    if methods is not None and method not in methods:
        raise BadLine(f"method: expected one of {list(methods)}, got {method!r}")
    if method == random:
        chance = _float(hit, "hit", 0, 1)  # the random baseline's probability
        if point:
            raise BadLine(f"point: expected nothing for the random baseline, got {point!r}")
        pixel = None
    else:
        if hit not in ("", "0", "1"):
            raise BadLine(f"hit: expected 1 (hit), 0 (miss) or nothing (not counted), got {hit!r}")
        chance = float(hit) if hit else math.nan
        pixel = tuple(_count(v, "point") for v in point.split(" "))
        if len(pixel) not in (2, 3):
            raise BadLine(f"point: expected 2 or 3 coordinates (a pixel or a voxel), got {point!r}")
    found = []
    for detection in detections.split(" ") if detections else ():
        score, _, positive = detection.partition(":")
        if positive not in ("0", "1"):
            raise BadLine(f"detections: expected 'score:1' or 'score:0', got {detection!r}")
        if not score:
            raise BadLine(f"detections: expected a finite score, got {detection!r}")
        found.append((_float(score, "detections"), positive == "1"))
    return Record(
        image,
        method,
        chance,
        pixel,
        _float(energy, "energy"),
        _float(multi, "multi", 0, 1),
        _count(objects, "objects"),
        tuple(found),
        _float(deletion, "deletion"),
        _float(insertion, "insertion"),
        outside == "1",
        _distance(distance, method == random),
    )


def _distance(text: str, random: bool) -> float:
    """A distance ``>= 0`` (``inf``: a constant map) or nothing (not counted)."""
    if not text:
        return math.nan
    if random:
        raise BadLine(f"distance: expected nothing for the random baseline, got {text!r}")
    if text == "inf":
        return math.inf
    return _float(text, "distance", 0)
