"""One image scored by one method: a record, and the columns a records file holds."""

from __future__ import annotations

from typing import Any, NamedTuple

from . import plugins


class Record(NamedTuple):
    """One image scored by one method.

    Attributes:
        image: the image's id: its index in the data, or the id the data gave (as text).
        method: the explainer's name (or the centre or random point's).
        hit: 1.0 hit, 0.0 miss, NaN not counted (no region); the random point's hit
            probability.
        point: the pointed pixel in array order (``(row, column)``,
            ``(depth, row, column)``), or ``None`` for the random point.
        energy: the energy-based Pointing Game (NaN when not asked for or without a
            region).
        multi: the fraction of the image's objects its top-K peaks found (NaN when not
            asked for or without an object).
        objects: the image's objects (counted for FROC).
        detections: the map's peaks for FROC: (score, true positive), best first.
        deletion: the area under the image's deletion curve (NaN when not asked for).
        insertion: the area under the image's insertion curve (NaN when not asked for).
        outside: whether a region of the image lies wholly outside its map (given in
            other coordinates, e.g. the original image's while the images were resized);
            an image whose every region is outside has none left, and is not counted.
        distance: the distance from the pointed pixel to the nearest pixel of the image's
            regions, in pixels or ``spacing`` units
            ([`pointing_distances`][normgrad.metrics.pointing_distances]): the Pointing
            Game at any tolerance ``t`` is ``distance < t or distance == 0``; ``inf`` for
            a constant map, NaN when not counted and for the random point.
        more: the fields of metrics registered after these, as ``(name, value)``
            pairs (read them with ``value``).
    """

    image: str
    method: str
    hit: float
    point: tuple[int, ...] | None
    energy: float = float("nan")
    multi: float = float("nan")
    objects: int = 0
    detections: tuple[tuple[float, bool], ...] = ()
    deletion: float = float("nan")
    insertion: float = float("nan")
    outside: bool = False
    distance: float = float("nan")
    more: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(
        cls, image: str, method: str, hit: float, point: tuple[int, ...] | None, **values: Any
    ) -> Record:
        """A record of ``image`` by ``method`` with ``values`` by field name (the others
        keep their defaults; ``more`` holds every later metric's field, in the registry's
        order)."""
        known = {k: v for k, v in values.items() if k in cls._fields}
        later = [f for f in plugins.fields() if f.name not in cls._fields]
        more = tuple((f.name, values.get(f.name, f.default)) for f in later)
        return cls(image, method, hit, point, **known, more=more)

    def value(self, name: str) -> Any:
        """The field ``name`` (a column of ``record_columns``: an attribute, or a later
        metric's field in ``more``, its default where not recorded)."""
        if name in self._fields:
            return getattr(self, name)
        given = dict(self.more)
        if name in given:
            return given[name]
        return next(f.default for f in plugins.fields() if f.name == name)


V3 = (
    "image", "method", "hit", "point", "energy", "multi", "objects", "detections",
    "deletion", "insertion", "outside", "distance",
)  # fmt: skip
"""The columns of a records file of version 3, in their order."""


def record_columns() -> list[str]:
    """The columns of a records file: version 3's, then the fields of the metrics
    registered since, in the registry's order."""
    return [*V3, *(f.name for f in plugins.fields() if f.name not in V3)]
