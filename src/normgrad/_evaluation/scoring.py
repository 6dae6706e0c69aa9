"""One batch of an evaluation: every explainer's maps, scored into per-image records."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._deferred import deferred_checks
from .._explainers.base import Explainer
from .._explainers.center import CenterBaseline
from .._explainers.shared import explain_shared
from ..metrics import (
    DeletionOptions,
    PreparedRegions,
    Regions,
    deletion_insertion,
    energy_pointing_game,
    random_point_hit_rate,
    smooth,
)
from ..metrics import peaks as find_peaks
from ..metrics._deletion import check_options
from ..metrics._distance import distances_from_points
from ..metrics._matching import match
from ..metrics._multi_pointing import multi_from_peaks, peaks_needed
from ..metrics._pointing import pointing_game_points
from ..metrics._regions.prepared import prepare
from .result import Record

CENTRE = "centre baseline"
RANDOM = "random baseline"
SMOOTHED = "{} (smoothed)"


def score_batch(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    x: torch.Tensor,
    labels: Any,
    batch_regions: Regions,
    ids: list[str],
    methods: list[str],
    *,
    tolerance: float,
    spacing: Sequence[float] | None,
    sigma: float | None,
    kernel_size: int,
    baselines: bool,
    metrics: tuple[str, ...],
    peaks: int,
    deletion_options: DeletionOptions,
) -> list[Record]:
    """Explain one batch with every method and score it: one record per image and method."""
    deleting = "deletion" in metrics or "insertion" in metrics
    if deleting:  # what depends on the images (steps per pixel, a baseline's shape) first
        check_options(deletion_options, x.shape, "deletion_options")
    target = labels.to(x.device) if isinstance(labels, torch.Tensor) else labels
    reads = _Reads()
    # every check of the batch (the regions', the explainers', the metrics') and every
    # number recorded are read from the device once, at the end
    with deferred_checks() as checks:
        # checked and converted once, then scored by every method and metric (objects one
        # by one where the detection metrics match them)
        objects = "multi" in metrics or "froc" in metrics
        shape = (x.shape[0], *x.shape[2:])
        regions = prepare(batch_regions, shape, x.device, one_by_one=objects)
        by_method = _scores(
            model, explainers, x, target, regions, reads,
            tolerance=tolerance, spacing=spacing, sigma=sigma, kernel_size=kernel_size,
            baselines=baselines, metrics=metrics, peaks=peaks,
            deletion_options=deletion_options, deleting=deleting,
        )  # fmt: skip
        checks.add(reads.packed(x.device), reads.store)
    by_method = reads.resolve(by_method)
    count, outside = by_method.pop(_BATCH)["count"], by_method.pop(_BATCH_OUTSIDE)["outside"]
    out = []
    for i, image in enumerate(ids):
        for method in methods:
            r = by_method[method]
            point = None if r["point"][i] is None else tuple(int(v) for v in r["point"][i])
            out.append(
                Record(
                    image, method, float(r["hit"][i]), point, float(r["energy"][i]),
                    float(r["multi"][i]), int(count[i]), r["detections"][i],
                    float(r["deletion"][i]), float(r["insertion"][i]), bool(outside[i]),
                    float(r["distance"][i]),
                )
            )  # fmt: skip
    return out


_BATCH, _BATCH_OUTSIDE = "\0count", "\0outside"  # rows of the batch, not of a method


@dataclass(frozen=True)
class _Later:
    """A tensor recorded in the batch's one read, by its place in it."""

    index: int


class _Reads:
    """The numbers a batch records, read from the device together."""

    def __init__(self) -> None:
        self._tensors: list[torch.Tensor] = []
        self._values: list[float] = []

    def later(self, tensor: torch.Tensor) -> _Later:
        self._tensors.append(tensor.detach())
        return _Later(len(self._tensors) - 1)

    def packed(self, device: torch.device) -> torch.Tensor:
        """Every tensor recorded, in float64 (exact for the ints and bools too), flat."""
        flat = [t.to(device, torch.float64).reshape(-1) for t in self._tensors]
        return torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64, device=device)

    def store(self, values: list[float]) -> None:
        self._values = values

    def _list(self, later: _Later) -> list[Any]:
        start = sum(t.numel() for t in self._tensors[: later.index])
        tensor = self._tensors[later.index]
        flat = self._values[start : start + tensor.numel()]
        if tensor.ndim <= 1:
            return flat
        width = math.prod(tensor.shape[1:])
        return [flat[i : i + width] for i in range(0, len(flat), width)]

    def resolve(self, rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The rows with every recorded tensor read as (nested) lists."""
        for row in rows.values():
            for key, value in row.items():
                if isinstance(value, _Later):
                    row[key] = self._list(value)
                elif key == "detections" and isinstance(value, tuple):
                    values, positive, valid = (self._list(v) for v in value)
                    row[key] = [
                        tuple((float(v), bool(tp)) for v, tp, ok in zip(*r) if ok)
                        for r in zip(values, positive, valid)
                    ]
        return rows


def _scores(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    x: torch.Tensor,
    target: Any,
    regions: PreparedRegions,
    reads: _Reads,
    *,
    tolerance: float,
    spacing: Sequence[float] | None,
    sigma: float | None,
    kernel_size: int,
    baselines: bool,
    metrics: tuple[str, ...],
    peaks: int,
    deletion_options: DeletionOptions,
    deleting: bool,
) -> dict[str, dict[str, Any]]:
    """Every method's scores of the batch, as tensors to be read (see ``_Reads``)."""
    n = x.shape[0]
    if baselines:
        # computed on the host (scipy): the masks are copied there before the explainers'
        # kernels are queued, while the device's queue is short
        rates = random_point_hit_rate(regions, x.shape[2:], tolerance, spacing).tolist()
    names = list(explainers)
    results = explain_shared([explainers[n] for n in names], x, target)
    maps = {n: r.saliency for n, r in zip(names, results)}
    # the class deletion/insertion follows: the one the explainers explained
    classes = next((r.classes for r in results if r.classes is not None), None)
    if sigma is not None:
        maps.update(
            {SMOOTHED.format(n): smooth(m, sigma, kernel_size) for n, m in list(maps.items())}
        )
    if baselines:
        maps[CENTRE] = CenterBaseline()(x)
    counts = regions.counts() if "multi" in metrics or "froc" in metrics else None
    nan = [math.nan] * n
    by_method: dict[str, dict[str, Any]] = {}
    for name, saliency in maps.items():
        points, hits = pointing_game_points(saliency, regions, tolerance, spacing)
        row: dict[str, Any] = {"point": reads.later(points), "hit": reads.later(hits)}
        row["energy"], row["multi"] = nan, nan
        row["distance"] = reads.later(distances_from_points(points, regions, spacing))
        row["deletion"], row["insertion"] = nan, nan
        row["detections"] = [()] * n
        if "energy" in metrics:
            row["energy"] = reads.later(energy_pointing_game(saliency, regions))
        if counts is not None:
            # one search serves both: the first K of more peaks are the K peaks
            multi, froc = "multi" in metrics, "froc" in metrics
            k = max(peaks if froc else 0, peaks_needed(counts) if multi else 0)
            found = find_peaks(saliency, k, min_distance=tolerance)
            if multi:
                row["multi"] = reads.later(multi_from_peaks(found, regions))
            if froc:
                values, valid = found.values[:, :peaks], found.valid[:, :peaks]
                positive, _ = match(found.coords[:, :peaks], valid, regions)
                row["detections"] = tuple(reads.later(t) for t in (values, positive, valid))
        if deleting:
            curves = deletion_insertion(model, x, saliency, target=classes, **deletion_options)
            row["deletion"] = reads.later(curves.deletion_auc)
            row["insertion"] = reads.later(curves.insertion_auc)
        by_method[name] = row
    if baselines:
        by_method[RANDOM] = {"point": [None] * n, "hit": rates, "energy": nan, "multi": nan}
        by_method[RANDOM]["deletion"], by_method[RANDOM]["insertion"] = nan, nan
        by_method[RANDOM]["detections"] = [()] * n
        by_method[RANDOM]["distance"] = nan
    by_method[_BATCH] = {"count": reads.later(counts) if counts is not None else [0] * n}
    by_method[_BATCH_OUTSIDE] = {"outside": reads.later(regions.outside_samples())}
    return by_method
