r"""FROC of saliency peaks, as the Object-CXR challenge scores foreign-object localisation.

Each map's [`peaks`][normgrad.metrics.peaks] are its detections, scored by the map's value at the
peak (times
the image's predicted probability when given, as the challenge scores images). Within an
image, detections are matched in order of decreasing value: one lying in an object not yet
found finds it (a true positive; the first such object in the order given), any other
detection is a false positive, including a second detection in an object already found.
Over the data set, detections are ranked by score; at every distinct score threshold
$t$ the operating point is

$$
\mathrm{FPI}(t) = \frac{\#\{\text{FP} \ge t\}}{\#\text{images}}, \qquad
\mathrm{sens}(t) = \frac{\#\{\text{TP} \ge t\}}{\#\text{objects}}
$$

(detections with equal scores enter together), with $(0, 0)$ before the first. The
sensitivity at a rate $r$ is the best sensitivity of an operating point with
$\mathrm{FPI} \le r$ (no interpolation), and FROC is its mean over
$r \in \{1/8, 1/4, 1/2, 1, 2, 4, 8\}$.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._checks import check_number, check_positive_int, check_spacing
from .._deferred import Deferred, deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._transfer import to_device
from ._accumulator import Accumulator
from ._maps import as_maps
from ._matching import match
from ._peaks import peaks
from ._regions.forms import Objects
from ._regions.prepared import PreparedRegions, prepare
from ._regions.shapes import Box, Ellipse, Polygon  # noqa: F401  (the doctests' names)

RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per image at which Object-CXR reads the sensitivity."""


def _host(values: torch.Tensor | Sequence[float] | Sequence[bool]) -> list[Any]:
    """Values as Python numbers: a tensor read in float64, a sequence as it is."""
    if isinstance(values, torch.Tensor):
        read: list[Any] = values.detach().double().flatten().tolist()
        return read
    return list(values)


@dataclass(frozen=True)
class FROCResult:
    """FROC over a data set: the score, the sensitivity at each rate, and the whole curve.

    Attributes:
        froc: the mean sensitivity over ``rates`` (NaN without objects).
        rates: the false positives per image at which the sensitivity is read.
        sensitivities: the sensitivity at each of ``rates``.
        fps_per_image: the curve's false positives per image ``(P,)``, starting at 0,
            non-decreasing.
        sensitivity: the curve's sensitivity ``(P,)``, starting at 0, non-decreasing.
        images: the images scored (with or without objects).
        objects: the objects counted (those with a pixel in their image's map).
        found: the objects found by some detection at the lowest threshold.
        outside: the objects wholly outside their image's map (e.g. boxes in the
            original image's pixels while the maps are smaller), not counted in
            ``objects``; a warning names them as they arrive.
    """

    froc: float
    rates: tuple[float, ...]
    sensitivities: tuple[float, ...]
    fps_per_image: torch.Tensor
    sensitivity: torch.Tensor
    images: int
    objects: int
    found: int
    outside: int = 0


class FROC(Accumulator):
    """Accumulates detections over batches: ``update`` (or ``add`` for detections matched
    elsewhere), ``compute``, ``merge``, ``all_reduce``, ``reset``.

    Args:
        k: peaks (detections) per map.
        min_distance: smallest distance between two peaks of a map, in pixels or in the
            units of ``spacing``.
        rates: false positives per image at which the sensitivity is read.
        spacing: size of a pixel (voxel) along each array dimension, e.g. millimetres.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import FROC, Box
        >>> maps = torch.zeros(2, 1, 8, 8)
        >>> maps[0, 0, 1, 1] = 0.9; maps[0, 0, 6, 6] = 0.5; maps[1, 0, 4, 4] = 0.7
        >>> objects = [[Box(0, 0, 2, 2)], []]
        >>> froc = FROC(k=2, min_distance=2)
        >>> froc.update(maps, objects).tolist()
        [[True, False], [False, False]]
        >>> result = froc.compute()
        >>> result.froc, result.fps_per_image.tolist(), result.sensitivity.tolist()
        (1.0, [0.0, 0.0, 0.5, 1.0], [0.0, 1.0, 1.0, 1.0])
    """

    _setting_names = ("k", "min_distance", "rates", "spacing")

    def __init__(
        self,
        k: int = 10,
        min_distance: float = 15,
        rates: Sequence[float] = RATES,
        spacing: Sequence[float] | None = None,
    ) -> None:
        self.k = check_positive_int(k, "k")
        self.min_distance = check_number(min_distance, "min_distance", low=0)
        self.rates = tuple(check_number(r, "rates", low=0) for r in rates)
        if not self.rates:
            raise InvalidArgumentError("rates: expected at least one rate, got none")
        self.spacing = check_spacing(spacing)
        self.reset()

    def reset(self) -> None:
        self._scores: list[float] = []  # every detection's score and whether it is a TP
        self._positive: list[bool] = []
        self.images = 0
        self.objects = 0
        self.outside = 0

    def update(
        self,
        saliency: torch.Tensor,
        regions: Objects | PreparedRegions,
        probabilities: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Detect, match and add a batch; returns which detections are true positives
        ``(N, k)`` (False also where a map has fewer than ``k`` peaks). Reads the device
        as the peaks' search needs (see [`peaks`][normgrad.metrics.peaks]), then once for
        every check and the batch's detections; ``add`` reads once, ``compute`` never.

        Args:
            saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, finite.
            regions: the objects of each image ([`Objects`][normgrad.metrics.Objects]), one by one.
            probabilities: ``(N,)`` predicted probability of each image, in ``[0, 1]``,
                multiplied into its detections' scores; None scores by the map's values
                alone.
        """
        maps = as_maps(saliency)
        n = maps.shape[0]
        # the checks (the objects', the maps', the probabilities') and the batch's numbers
        # are read together at the end; the peaks' search reads what its candidates need
        with deferred_checks() as checks:
            objects = prepare(regions, maps.shape, maps.device, one_by_one=True)
            space = self.spacing
            found = peaks(maps, self.k, min_distance=self.min_distance, spacing=space)
            positive, _ = match(found.coords, found.valid, objects)
            scores = found.values.to(torch.float64)
            if probabilities is not None:
                scores = scores * _probabilities(probabilities, n, scores.device, checks)[:, None]
            present = objects.counts()
            far = objects.outside_count if objects.outside_count is not None else present * 0
            counts = torch.stack([present.sum(), far.sum()])
            flags = [scores, positive, found.valid, counts]
            checks.add(torch.cat([t.double().flatten() for t in flags]), self._add_read(n))
        return positive

    def _add_read(self, n: int) -> Callable[[list[float]], None]:
        """Add a batch of ``n`` maps from its numbers as read: scores, true positives and
        valid slots ``(n, k)`` each, its objects and those outside."""

        def add(values: list[float]) -> None:
            size = n * self.k
            scores, positive, valid = (values[i * size : (i + 1) * size] for i in range(3))
            kept = [i for i, v in enumerate(valid) if v]
            self._scores += [scores[i] for i in kept]
            self._positive += [bool(positive[i]) for i in kept]
            self.images += n
            self.objects += int(values[-2])
            self.outside += int(values[-1])

        return add

    def add(
        self,
        scores: torch.Tensor | Sequence[float],
        positive: torch.Tensor | Sequence[bool],
        images: int,
        objects: int,
        outside: int = 0,
    ) -> None:
        """Add detections matched elsewhere: their ``scores`` and whether each is a true
        positive (1-D, one per detection), from ``images`` images holding ``objects``
        objects (e.g. per-image records of an evaluation), and ``outside`` objects more
        that lie wholly outside their maps (not counted). Tensors are read from their
        device in one read; Python numbers (a record's) are taken as they are."""
        if isinstance(scores, torch.Tensor) and isinstance(positive, torch.Tensor):
            count = scores.numel()
            both = torch.cat([t.detach().double().flatten() for t in (scores, positive)])
            values = both.tolist()  # one read
            found, hits = values[:count], [bool(v) for v in values[count:]]
        else:  # what is a tensor read (as float64), the numbers taken as they are
            found = [float(v) for v in _host(scores)]
            hits = [bool(v) for v in _host(positive)]
        if len(found) != len(hits):
            raise ShapeError(
                f"positive: expected one flag per detection ({len(found)} scores), got {len(hits)}",
                (len(hits),),
            )
        self._scores += found
        self._positive += hits
        self.images += int(images)
        self.objects += int(objects)
        self.outside += int(outside)

    def _merge(self, other: FROC) -> None:
        self._scores.extend(other._scores)
        self._positive.extend(other._positive)
        self.images += other.images
        self.objects += other.objects
        self.outside += other.outside

    def compute(self) -> FROCResult:
        """The FROC of every detection added since the last ``reset`` (on the host)."""
        order = sorted(range(len(self._scores)), key=lambda i: -self._scores[i])  # stable
        scores = [self._scores[i] for i in order]
        positive = [self._positive[i] for i in order]
        tp, fp = [0], [0]  # at each operating point: the curve's start, each group's end
        hits = 0
        for j, hit in enumerate(positive):
            hits += hit
            if j + 1 == len(scores) or scores[j + 1] != scores[j]:  # equal scores together
                tp.append(hits)
                fp.append(j + 1 - hits)
        fps = [f / max(self.images, 1) for f in fp]
        objects = self.objects if self.objects else math.nan
        sensitivity = [t / objects for t in tp]
        at_rates = [max(v for f, v in zip(fps, sensitivity) if f <= rate) for rate in self.rates]
        return FROCResult(
            sum(at_rates) / len(at_rates),
            self.rates,
            tuple(at_rates),
            torch.tensor(fps, dtype=torch.float64),
            torch.tensor(sensitivity, dtype=torch.float64),
            self.images,
            self.objects,
            sum(positive),
            self.outside,
        )


def _probabilities(
    probabilities: object, n: int, device: torch.device, checks: Deferred
) -> torch.Tensor:
    """The images' predicted probabilities ``(n,)`` (float64, on ``device``), checked (with
    ``checks``): a value outside [0, 1] (or NaN) would reorder the detections silently."""
    try:
        p = to_device(probabilities, device)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(
            f"probabilities: expected {n} numbers in [0, 1] (one per map), got "
            f"{describe(probabilities)}"
        ) from None
    if p.dtype == torch.bool or p.is_complex() or p.numel() != n or p.ndim > 2:
        raise ShapeError(
            f"probabilities: expected {n} numbers in [0, 1] (one per map, shape ({n},)), got "
            f"{describe(probabilities)}",
            tuple(p.shape),
        )
    p = p.to(torch.float64).flatten()

    def refuse(values: list[float]) -> None:
        at = [i for i, v in enumerate(values) if not 0 <= v <= 1]  # NaN too
        if at:
            raise InvalidArgumentError(
                f"probabilities: expected values in [0, 1] (each image's predicted "
                f"probability), got {[values[i] for i in at[:5]]} at {at[:5]}"
                f"{' and more' if len(at) > 5 else ''}; pass softmax or sigmoid outputs, "
                "not logits"
            )

    checks.add(p, refuse)
    return p


def froc(
    saliency: torch.Tensor,
    regions: Objects | PreparedRegions,
    *,
    k: int = 10,
    min_distance: float = 15,
    probabilities: torch.Tensor | None = None,
    rates: Sequence[float] = RATES,
    spacing: Sequence[float] | None = None,
) -> FROCResult:
    """FROC of the peaks of a batch of maps taken as a whole data set (see
    [`FROC`][normgrad.metrics.FROC]).

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, finite.
        regions: the objects of each image ([`Objects`][normgrad.metrics.Objects]): box tensors, or
            lists of
            [`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
            [`Polygon`][normgrad.metrics.Polygon]. Objects with no pixel in
            the image are not counted; images without objects add false positives only.
            Objects wholly outside the map are warned about and counted in ``outside``.
        k: peaks (detections) per map.
        min_distance: smallest distance between two peaks of a map, in pixels or in the
            units of ``spacing``.
        probabilities: ``(N,)`` predicted probability of each image, in ``[0, 1]``,
            multiplied into its detections' scores (the challenge's image score); a value
            outside ``[0, 1]`` or NaN is refused.
        rates: false positives per image at which the sensitivity is read.
        spacing: size of a pixel (voxel) along each array dimension, e.g. millimetres.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import Ellipse, Polygon, froc
        >>> maps = torch.zeros(1, 1, 6, 6)
        >>> maps[0, 0, 1, 1] = 1; maps[0, 0, 4, 4] = 0.5
        >>> objects = [[Ellipse(0, 0, 2, 2), Polygon([(4, 4), (5, 4), (5, 5)])]]
        >>> froc(maps, objects, min_distance=2).froc
        1.0
    """
    accumulator = FROC(k, min_distance, rates, spacing)
    accumulator.update(saliency, regions, probabilities)
    return accumulator.compute()
