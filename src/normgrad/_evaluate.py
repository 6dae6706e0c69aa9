"""The paper's evaluation protocol: Pointing Game for many explainers over a data set."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._base import Explainer
from ._center import CenterBaseline
from ._errors import ArgumentTypeError, InvalidArgumentError, describe
from ._model import check_model
from ._normgrad import NormGrad, explain_shared
from .metrics import PointingGame, Targets, random_point_hit_rate, smooth

CENTRE = "centre baseline"
RANDOM = "random baseline"


@dataclass(frozen=True)
class MethodScore:
    """One row of an evaluation table."""

    method: str
    accuracy: float
    low: float
    high: float
    hits: float
    total: int


@dataclass(frozen=True)
class EvaluationResult:
    """Pointing Game accuracy per method, with Wilson intervals and the two baselines.

    The random baseline is an exact expectation (the mean over images of the probability
    that a uniformly random point hits), so it has no interval and fractional hits.
    """

    rows: list[MethodScore]
    tolerance: float
    confidence: float

    def __getitem__(self, method: str) -> MethodScore:
        for row in self.rows:
            if row.method == method:
                return row
        raise KeyError(f"no method {method!r} (have: {', '.join(r.method for r in self.rows)})")

    def to_markdown(self) -> str:
        ci = f"{self.confidence:.0%} CI"
        lines = [f"| method | accuracy | {ci} | hits / images |", "| --- | --- | --- | --- |"]
        for r in self.rows:
            interval = "—" if math.isnan(r.low) else f"[{r.low:.3f}, {r.high:.3f}]"
            hits = f"{r.hits:.1f}" if r.hits != int(r.hits) else f"{int(r.hits)}"
            lines.append(f"| {r.method} | {r.accuracy:.3f} | {interval} | {hits} / {r.total} |")
        return "\n".join(lines)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["method", "accuracy", "ci_low", "ci_high", "hits", "images", "tolerance"])
        for r in self.rows:
            writer.writerow([r.method, r.accuracy, r.low, r.high, r.hits, r.total, self.tolerance])
        return out.getvalue()

    def __str__(self) -> str:
        return self.to_markdown()


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


def _targets_to(targets: Targets, device: torch.device) -> Targets:
    if isinstance(targets, torch.Tensor):
        return targets.to(device)
    return [torch.as_tensor(t, device=device) for t in targets]


def evaluate(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    data: Iterable[tuple[torch.Tensor, Any, Targets]],
    *,
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
    smoothing: float | None = None,
    kernel_size: int = 11,
    baselines: bool = True,
    confidence: float = 0.95,
    progress: bool = True,
) -> EvaluationResult:
    """Run the Pointing Game for every explainer over ``data``.

    NormGrad explainers of ``model`` share one forward and one backward pass per batch
    (see :func:`normgrad.explain_shared`); every other explainer runs on its own.

    Args:
        model: the classifier; batches are moved to its device.
        explainers: name -> explainer.
        data: an iterable of ``(images, labels, targets)``: images ``(N, C, H, W)``; labels
            the class to explain per sample (an int tensor ``(N,)``), or ``None`` for the
            predicted class; targets the regions, boolean masks or per-sample boxes as in
            :func:`normgrad.metrics.pointing_game`. Images without a region are not counted.
        tolerance: Pointing Game radius in pixels (or in ``spacing`` units).
        spacing: pixel size per array dimension, for anisotropic images.
        smoothing: if given, also score every method after Gaussian smoothing with this
            sigma (rows named ``"<method> (smoothed)"``), as in the paper's Table 2.
        kernel_size: size of the smoothing kernel.
        baselines: add the centre baseline and the exact random-point baseline.
        confidence: level of the Wilson intervals.
        progress: print progress to stderr.

    Returns:
        :class:`EvaluationResult`; ``print(result)`` shows a Markdown table.
    """
    check_model(model)
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
    if smoothing is not None:
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
                x, labels, targets = batch
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"data: expected batches of (images, labels, targets), got {describe(batch)}"
                ) from None
            x = x.to(device)
            targets = _targets_to(targets, device)
            target = labels.to(device) if isinstance(labels, torch.Tensor) else labels
            maps: dict[str, torch.Tensor] = {}
            if shared:
                results = explain_shared([explainers[n] for n in shared], x, target)  # type: ignore[misc]
                maps.update({n: r.saliency for n, r in zip(shared, results)})
            for name in alone:
                maps[name] = explainers[name](x, target)
            for name, saliency in maps.items():
                game(name).update(saliency, targets)
                if smoothing is not None:
                    game(f"{name} (smoothed)").update(
                        smooth(saliency, smoothing, kernel_size), targets
                    )
            if baselines:
                game(CENTRE).update(CenterBaseline()(x), targets)
                rates = random_point_hit_rate(targets, x.shape[2:], tolerance, spacing)
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
