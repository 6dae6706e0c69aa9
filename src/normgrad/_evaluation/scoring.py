"""One batch of an evaluation: every explainer's maps, scored into per-image records."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from .._explainers.base import Explainer
from .._explainers.center import CenterBaseline
from .._explainers.shared import explain_shared
from ..metrics import (
    DeletionOptions,
    Objects,
    Regions,
    deletion_insertion,
    energy_pointing_game,
    prepare_regions,
    random_point_hit_rate,
    smooth,
)
from ..metrics import peaks as find_peaks
from ..metrics._deletion import check_options
from ..metrics._distance import distances_from_points
from ..metrics._multi_pointing import multi_from_peaks, peaks_needed
from ..metrics._objects import match, object_lists
from ..metrics._pointing import pointing_game_points
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
    # checked and converted once, then scored by every method
    regions = prepare_regions(batch_regions, (x.shape[0], *x.shape[2:]), x.device)
    target = labels.to(x.device) if isinstance(labels, torch.Tensor) else labels
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
    n = x.shape[0]
    objects, counts = None, None
    if "multi" in metrics or "froc" in metrics:
        # checked there: the objects one by one (boxes or shapes), not masks
        objects, counts = object_lists(cast(Objects, batch_regions), (n, *x.shape[2:]))
    nan = [math.nan] * n
    by_method: dict[str, dict[str, list[Any]]] = {}
    for name, saliency in maps.items():
        points, hits = pointing_game_points(saliency, regions, tolerance, spacing)
        row = {"point": points.tolist(), "hit": hits.tolist(), "energy": nan, "multi": nan}
        row["distance"] = distances_from_points(points, regions, spacing).tolist()
        row["deletion"], row["insertion"] = nan, nan
        row["detections"] = [()] * n
        if "energy" in metrics:
            row["energy"] = energy_pointing_game(saliency, regions).tolist()
        if objects is not None and counts is not None:
            # one search serves both: the first K of more peaks are the K peaks
            multi, froc = "multi" in metrics, "froc" in metrics
            k = max(peaks if froc else 0, peaks_needed(counts) if multi else 0)
            found = find_peaks(saliency, k, min_distance=tolerance)
            if multi:
                row["multi"] = multi_from_peaks(found, objects, counts).tolist()
            if froc:
                values, valid = found.values[:, :peaks], found.valid[:, :peaks]
                positive, _ = match(found.coords[:, :peaks], valid, objects)
                row["detections"] = [
                    tuple((float(v), bool(tp)) for v, tp, ok in zip(*rows) if ok)
                    for rows in zip(values.tolist(), positive.tolist(), valid.tolist())
                ]
        if deleting:
            curves = deletion_insertion(model, x, saliency, target=classes, **deletion_options)
            row["deletion"] = curves.deletion_auc.tolist()
            row["insertion"] = curves.insertion_auc.tolist()
        by_method[name] = row
    if baselines:
        rates = random_point_hit_rate(regions, x.shape[2:], tolerance, spacing).tolist()
        by_method[RANDOM] = {"point": [None] * n, "hit": rates, "energy": nan, "multi": nan}
        by_method[RANDOM]["deletion"], by_method[RANDOM]["insertion"] = nan, nan
        by_method[RANDOM]["detections"] = [()] * n
        by_method[RANDOM]["distance"] = nan
    count = counts.tolist() if counts is not None else [0] * n
    outside = regions.outside_samples().tolist()
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
