"""One batch of an evaluation: every explainer's maps, scored into per-image records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._deferred import deferred_checks
from .._explainers.base import Explainer
from .._explainers.center import CenterMap
from .._explainers.shared import explain_shared
from .._transfer import to_device
from ..metrics import DeletionOptions, Regions, random_point_hit_rate, smooth
from ..metrics._distance import distances_from_points
from ..metrics._pointing import pointing_game_points
from ..metrics._regions.prepared import prepare
from . import plugins
from .per_class import classes_per_image, pair_maps, pairs
from .plugins.base import Batch, Values
from .record import Record

CENTER = "centre map"
RANDOM = "random point"
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
    reference_rows: bool,
    metrics: tuple[str, ...],
    peaks: int,
    deletion_options: DeletionOptions,
) -> list[Record]:
    """Explain one batch with every method and score it: one record per image and method.

    Every check of the batch (the regions', the explainers', the metrics') and every
    number recorded are read from the device once, at the end; the random point's
    regions are copied to the host before (its rate is computed there, with scipy).
    """
    chosen = plugins.serving(metrics)
    objects = any(metric.needs_objects for metric in chosen)
    options: dict[str, Any] = {"tolerance": tolerance, "spacing": spacing, "peaks": peaks}
    options["deletion_options"] = deletion_options
    for metric in chosen:  # what depends on the images, before they are explained
        metric.check_images(options, x, labels)
    k = classes_per_image(labels)  # labels (N, K): one image per (image, class) pair
    images, target = x, to_device(labels, x.device) if isinstance(labels, torch.Tensor) else labels
    if k:
        x, batch_regions, ids = pairs(x, labels, batch_regions, ids)
    with deferred_checks() as checks:
        # converted once, then scored by every method and metric (the objects one by one
        # where a metric matches them)
        shape = (x.shape[0], *x.shape[2:])
        regions = prepare(batch_regions, shape, x.device, one_by_one=objects, per_class=k)
        # on the host before the explainers' kernels are queued, while the queue is short
        if reference_rows:
            rates = random_point_hit_rate(regions, x.shape[2:], tolerance, spacing).tolist()
        maps, classes = _maps(explainers, images, target, sigma, kernel_size, reference_rows, k)
        batch = Batch(model, x, classes, regions, options, chosen, maps)
        # every method's Pointing Game (which checks its maps), then the metrics, which
        # may search every method's maps at once
        rows = {name: _pointing_row(batch, saliency) for name, saliency in maps.items()}
        for name, saliency in maps.items():
            for metric in batch.metrics:
                rows[name].update(metric.score(batch, name, saliency))
        count = batch.later(regions.counts()).values if objects else lambda: [0] * len(ids)
        outside = batch.later(regions.outside_samples()).values
        checks.add(batch.reads.packed(x.device), batch.reads.store)
    read = {name: {key: values() for key, values in row.items()} for name, row in rows.items()}
    image: dict[str, list[Any]] = {
        "objects": [int(c) for c in count()],
        "outside": [bool(o) for o in outside()],
    }
    out = []
    for i, name in enumerate(ids):
        common = {key: values[i] for key, values in image.items()}
        for method in methods:
            if method == RANDOM:  # no point: its exact rate
                out.append(Record.of(name, method, rates[i], None, **common))
                continue
            r = {key: values[i] for key, values in read[method].items()}
            point = tuple(int(v) for v in r.pop("point"))
            out.append(Record.of(name, method, r.pop("hit"), point, **r, **common))
    return out


def _maps(
    explainers: Mapping[str, Explainer],
    x: torch.Tensor,
    target: Any,
    sigma: float | None,
    kernel_size: int,
    reference_rows: bool,
    k: int = 0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Every method's maps of the batch (the explainers' in one shared pass, smoothed, the
    centre map's), and the class the explainers explained (deletion and insertion
    follow it). With ``K`` classes per image, the maps and classes of the pairs ``N * K``
    (see ``per_class.pairs``)."""
    names = list(explainers)
    results = explain_shared([explainers[n] for n in names], x, target)
    maps = {n: pair_maps(r.saliency, k) for n, r in zip(names, results)}
    classes = next((r.classes.flatten() for r in results if r.classes is not None), None)
    if sigma is not None:
        maps.update(
            {SMOOTHED.format(n): smooth(m, sigma, kernel_size) for n, m in list(maps.items())}
        )
    if reference_rows:
        centre = CenterMap()(x)
        maps[CENTER] = centre.repeat_interleave(k, 0) if k else centre
    return maps, classes


def _pointing_row(batch: Batch, saliency: torch.Tensor) -> dict[str, Values]:
    """The Pointing Game's point, hit and distance of one method's maps ``saliency`` for
    the images of ``batch``."""
    tolerance, spacing = batch.options["tolerance"], batch.options["spacing"]
    points, hits = pointing_game_points(saliency, batch.regions, tolerance, spacing)
    distances = distances_from_points(points, batch.regions, spacing)
    return {
        "point": batch.later(points).values,
        "hit": batch.later(hits).values,
        "distance": batch.later(distances).values,
    }
