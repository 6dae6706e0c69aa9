"""Object-CXR's FROC as a column of ``evaluate``: each map's peaks are its detections,
recorded per image and accumulated over the whole data set."""

from __future__ import annotations

import math
from typing import Any

import torch

from ...metrics import FROC
from ...metrics._accumulator import Accumulator
from ...metrics._matching import match
from ..fields import BadLine, Field, read_number
from .base import Batch, EvaluationMetric, Values

Detections = tuple[tuple[float, bool], ...]
"""A map's detections, best first: (score, true positive)."""


def _write(detections: Detections) -> str:
    return " ".join(f"{score!r}:{int(tp)}" for score, tp in detections)


def _read(text: str) -> Detections:
    found = []
    for detection in text.split(" ") if text else ():
        score, _, positive = detection.partition(":")
        if positive not in ("0", "1"):
            raise BadLine(f"detections: expected 'score:1' or 'score:0', got {detection!r}")
        if not score:
            raise BadLine(f"detections: expected a finite score, got {detection!r}")
        found.append((read_number(score, "detections"), positive == "1"))
    return tuple(found)


class FROCMetric(EvaluationMetric):
    """``"froc"``: the FROC of each map's ``peaks`` best peaks over the data set; records
    each image's detections (``score:1`` a true positive, ``score:0`` a false one)."""

    columns = (("froc", "FROC"),)
    fields = (Field("detections", (), _write, _read),)
    needs_objects = True

    def peaks_wanted(self, batch: Batch) -> int:
        k: int = batch.options["peaks"]
        return k

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        k = self.peaks_wanted(batch)
        found = batch.peaks(method, saliency)
        values, valid = found.values[:, :k], found.valid[:, :k]
        positive, _ = match(found.coords[:, :k], valid, batch.regions)
        read = [batch.later(t) for t in (values, positive, valid)]

        def detections() -> list[Detections]:
            rows = zip(*(r.values() for r in read))
            return [tuple((v, bool(tp)) for v, tp, ok in zip(*row) if ok) for row in rows]

        return {"detections": detections}

    def accumulator(self, name: str) -> Accumulator:
        return FROC()

    def add(self, accumulator: Accumulator, name: str, record: Any) -> None:
        assert isinstance(accumulator, FROC)
        if record.point is None:  # the random point detects nothing
            return
        scores = [s for s, _ in record.detections]
        positive = [tp for _, tp in record.detections]
        accumulator.add(scores, positive, images=1, objects=record.objects)

    def cell(self, accumulator: Accumulator, name: str) -> float:
        assert isinstance(accumulator, FROC)
        return accumulator.compute().froc if accumulator.images else math.nan
