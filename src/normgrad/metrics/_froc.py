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

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_number, check_positive_int
from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ._accumulator import Accumulator
from ._maps import as_maps
from ._matching import match
from ._peaks import peaks
from ._regions.forms import Objects
from ._regions.prepared import PreparedRegions, prepare
from ._regions.shapes import Box, Ellipse, Polygon  # noqa: F401  (the doctests' names)

RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per image at which Object-CXR reads the sensitivity."""


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
        min_distance: smallest distance between two peaks of a map, in pixels.
        rates: false positives per image at which the sensitivity is read.

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

    _setting_names = ("k", "min_distance", "rates")

    def __init__(
        self, k: int = 10, min_distance: float = 15, rates: Sequence[float] = RATES
    ) -> None:
        self.k = check_positive_int(k, "k")
        self.min_distance = check_number(min_distance, "min_distance", low=0)
        self.rates = tuple(check_number(r, "rates", low=0) for r in rates)
        if not self.rates:
            raise InvalidArgumentError("rates: expected at least one rate, got none")
        self.reset()

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._positive: list[torch.Tensor] = []
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
        ``(N, k)`` (False also where a map has fewer than ``k`` peaks).

        Args:
            saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, finite.
            regions: the objects of each image ([`Objects`][normgrad.metrics.Objects]), one by one.
            probabilities: ``(N,)`` predicted probability of each image, in ``[0, 1]``,
                multiplied into its detections' scores; None scores by the map's values
                alone.
        """
        maps = as_maps(saliency)
        with deferred_checks():  # the objects' checks, before the peaks are searched
            objects = prepare(regions, maps.shape, maps.device, one_by_one=True)
        found = peaks(maps, self.k, min_distance=self.min_distance)
        positive, _ = match(found.coords, found.valid, objects)
        scores = found.values.to(torch.float64)
        if probabilities is not None:
            scores = scores * _probabilities(probabilities, maps.shape[0], scores.device)[:, None]
        valid = found.valid
        outside = objects.outside_count
        far = int(outside.sum()) if outside is not None else 0
        self.add(scores[valid], positive[valid], maps.shape[0], int(objects.counts().sum()), far)
        return positive

    def add(
        self,
        scores: torch.Tensor,
        positive: torch.Tensor,
        images: int,
        objects: int,
        outside: int = 0,
    ) -> None:
        """Add detections matched elsewhere: their ``scores`` and whether each is a true
        positive (1-D, one per detection), from ``images`` images holding ``objects``
        objects (e.g. per-image records of an evaluation), and ``outside`` objects more
        that lie wholly outside their maps (not counted)."""
        self._scores.append(scores.detach().to("cpu", torch.float64).flatten())
        self._positive.append(positive.detach().to("cpu", torch.bool).flatten())
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
        """The FROC of every detection added since the last ``reset``."""
        scores = torch.cat(self._scores) if self._scores else torch.zeros(0, dtype=torch.float64)
        positive = torch.cat(self._positive) if self._positive else torch.zeros(0, dtype=torch.bool)
        order = scores.argsort(descending=True, stable=True)
        scores, positive = scores[order], positive[order]
        tp = positive.long().cumsum(0)
        fp = (~positive).long().cumsum(0)
        last = torch.ones_like(positive)
        last[:-1] = scores[1:] != scores[:-1]  # the end of each group of equal scores
        zero = torch.zeros(1, dtype=torch.long)
        fps = torch.cat([zero, fp[last]]).double() / max(self.images, 1)
        objects = self.objects if self.objects else float("nan")
        sensitivity = torch.cat([zero, tp[last]]).double() / objects
        at_rates = []
        for rate in self.rates:
            reachable = fps <= rate
            at_rates.append(float(sensitivity[reachable].max()))
        froc = sum(at_rates) / len(at_rates)
        return FROCResult(
            froc,
            self.rates,
            tuple(at_rates),
            fps,
            sensitivity,
            self.images,
            self.objects,
            int(positive.sum()),
            self.outside,
        )


def _probabilities(probabilities: object, n: int, device: torch.device) -> torch.Tensor:
    """The images' predicted probabilities ``(n,)`` (float64, on ``device``), checked: a
    value outside [0, 1] (or NaN) would reorder the detections silently."""
    try:
        p = torch.as_tensor(probabilities, device=device)
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
    wrong = ~((p >= 0) & (p <= 1))  # NaN too
    if bool(wrong.any()):
        at = wrong.nonzero()[:, 0].tolist()
        raise InvalidArgumentError(
            f"probabilities: expected values in [0, 1] (each image's predicted probability), "
            f"got {[p[i].item() for i in at[:5]]} at {at[:5]}"
            f"{' and more' if len(at) > 5 else ''}; pass softmax or sigmoid outputs, not logits"
        )
    return p


def froc(
    saliency: torch.Tensor,
    regions: Objects | PreparedRegions,
    *,
    k: int = 10,
    min_distance: float = 15,
    probabilities: torch.Tensor | None = None,
    rates: Sequence[float] = RATES,
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
        min_distance: smallest distance between two peaks of a map, in pixels.
        probabilities: ``(N,)`` predicted probability of each image, in ``[0, 1]``,
            multiplied into its detections' scores (the challenge's image score); a value
            outside ``[0, 1]`` or NaN is refused.
        rates: false positives per image at which the sensitivity is read.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import Ellipse, Polygon, froc
        >>> maps = torch.zeros(1, 1, 6, 6)
        >>> maps[0, 0, 1, 1] = 1; maps[0, 0, 4, 4] = 0.5
        >>> objects = [[Ellipse(0, 0, 2, 2), Polygon([(4, 4), (5, 4), (5, 5)])]]
        >>> froc(maps, objects, min_distance=2).froc
        1.0
    """
    accumulator = FROC(k, min_distance, rates)
    accumulator.update(saliency, regions, probabilities)
    return accumulator.compute()
