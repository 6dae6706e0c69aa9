"""The paper's evaluation protocol: Pointing Game for many explainers over a data set."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._checks import (
    check_confidence,
    check_kernel_size,
    check_sigma,
    check_spacing,
    check_tolerance,
)
from .._errors import ArgumentTypeError, InvalidArgumentError, describe
from .._explainers.base import Explainer
from .._explainers.center import CenterBaseline
from .._explainers.normgrad import NormGrad, explain_shared
from .._model.layers import check_model
from ..metrics import PointingGame, Regions, prepare_regions, random_point_hit_rate, smooth
from .result import EvaluationResult, MethodScore

CENTRE = "centre baseline"
RANDOM = "random baseline"


class _Progress:
    def __init__(self, enabled: bool, total: int | None) -> None:
        self.enabled = enabled
        self.total = total
        self.start = time.perf_counter()

    def step(self, done: int, images: int) -> None:
        if not self.enabled:
            return
        of = f"/{self.total}" if self.total is not None else ""
        rate = images / max(time.perf_counter() - self.start, 1e-9)
        sys.stderr.write(f"\revaluate: batch {done}{of}, {images} images, {rate:.1f} images/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    data: Iterable[tuple[torch.Tensor, Any, Regions]],
    *,
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
    smoothing_sigma: float | None = None,
    smoothing_kernel_size: int = 11,
    baselines: bool = True,
    confidence: float = 0.95,
    progress: bool = True,
) -> EvaluationResult:
    """Run the Pointing Game for every explainer over ``data``.

    NormGrad explainers of ``model`` share one forward and one backward pass per batch
    (see [`explain_shared`][normgrad.explain_shared]); every other explainer runs on its own.

    Args:
        model: the classifier; batches are moved to its device.
        explainers: name -> explainer.
        data: an iterable of ``(images, labels, regions)``: images ``(N, C, H, W)``; labels
            the class to explain per sample (an int tensor ``(N,)``), or ``None`` for the
            predicted class; regions the objects to point at, boolean masks or per-sample
            boxes as in [`metrics.pointing_game`][normgrad.metrics.pointing_game]. Images without a
            region are not counted.
        tolerance: Pointing Game radius in pixels (or in ``spacing`` units).
        spacing: pixel size per array dimension, for anisotropic images.
        smoothing_sigma: if given, also score every method after Gaussian smoothing of its
            maps with this standard deviation in pixels (rows named
            ``"<method> (smoothed)"``), as in the paper's Table 2.
        smoothing_kernel_size: number of taps of the smoothing Gaussian (odd).
        baselines: add the centre baseline and the exact random-point baseline.
        confidence: level of the Wilson intervals.
        progress: print progress to stderr.

    Every argument is checked before the first batch is explained.

    Returns:
        [`EvaluationResult`][normgrad.EvaluationResult]; ``print(result)`` shows a Markdown table.
    """
    check_model(model)
    check_tolerance(tolerance)
    check_spacing(spacing)
    check_confidence(confidence)
    if smoothing_sigma is not None:
        check_sigma(smoothing_sigma, "smoothing_sigma")
    check_kernel_size(smoothing_kernel_size, "smoothing_kernel_size")
    if not isinstance(explainers, Mapping) or not explainers:
        raise ArgumentTypeError(
            f"explainers: expected a non-empty dict name -> explainer, got {describe(explainers)}"
        )
    for name, explainer in explainers.items():
        if not isinstance(explainer, Explainer):
            raise ArgumentTypeError(
                f"explainers[{name!r}]: expected a normgrad explainer, got {describe(explainer)}"
            )
    reserved = {CENTRE, RANDOM} if baselines else set()
    clash = reserved & set(explainers)
    if clash:
        raise InvalidArgumentError(
            f"explainers: the names {sorted(clash)} are reserved for the baselines"
        )
    device = _device(model)
    shared = [n for n, e in explainers.items() if isinstance(e, NormGrad) and e.model is model]
    alone = [n for n in explainers if n not in shared]
    games: dict[str, PointingGame] = {}

    def game(name: str) -> PointingGame:
        if name not in games:
            games[name] = PointingGame(tolerance, spacing, confidence)
        return games[name]

    order = list(explainers)
    if smoothing_sigma is not None:
        order += [f"{n} (smoothed)" for n in explainers]
    if baselines:
        order.append(CENTRE)
    random_sum, random_count = 0.0, 0
    total = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    bar = _Progress(progress, total)
    images = 0
    try:
        for step, batch in enumerate(data, start=1):
            try:
                x, labels, batch_regions = batch
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"data: expected batches of (images, labels, regions), got {describe(batch)}"
                ) from None
            x = x.to(device)
            # checked and converted once, then scored by every method
            regions = prepare_regions(batch_regions, (x.shape[0], *x.shape[2:]), device)
            target = labels.to(device) if isinstance(labels, torch.Tensor) else labels
            maps: dict[str, torch.Tensor] = {}
            if shared:
                results = explain_shared([explainers[n] for n in shared], x, target)  # type: ignore[misc]
                maps.update({n: r.saliency for n, r in zip(shared, results)})
            for name in alone:
                maps[name] = explainers[name](x, target)
            for name, saliency in maps.items():
                game(name).update(saliency, regions)
                if smoothing_sigma is not None:
                    smoothed = smooth(saliency, smoothing_sigma, smoothing_kernel_size)
                    game(f"{name} (smoothed)").update(smoothed, regions)
            if baselines:
                game(CENTRE).update(CenterBaseline()(x), regions)
                rates = random_point_hit_rate(regions, x.shape[2:], tolerance, spacing)
                counted = ~torch.isnan(rates)
                random_sum += float(rates[counted].sum())
                random_count += int(counted.sum())
            images += x.shape[0]
            bar.step(step, images)
    finally:
        bar.close()
    rows = []
    for name in order:
        r = game(name).compute()
        rows.append(MethodScore(name, r.accuracy, r.low, r.high, r.hits, r.total))
    if baselines:
        accuracy = random_sum / random_count if random_count else float("nan")
        rows.append(
            MethodScore(RANDOM, accuracy, float("nan"), float("nan"), random_sum, random_count)
        )
    return EvaluationResult(rows, float(tolerance), confidence)
