r"""CheXlocalize's evaluation protocol (Saporta et al., Nat. Mach. Intell. 2022).

Each map explains one class of one image (a chest X-ray and a pathology); it becomes a
segmentation ([`binarize`][normgrad.metrics.binarize]: Otsu's threshold, or a per-class
threshold tuned on a validation split), emptied when the model's probability for the
class is at most a per-class cutoff (the probability gate), and is compared with the
ground-truth segmentation by IoU; the hit rate asks whether the map's maximum lies in it.
Means are reported per class and overall with bootstrap intervals, on all pairs and on
the true positives (a prediction and a ground truth both non-empty).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, ShapeError, describe
from .._transfer import to_device
from ._binarize import (
    binarize,
    box_smooth,
    check_classes,
    min_max,
    refuse_outside_unit,
)
from ._bootstrap import Interval, bootstrap_mean
from ._maps import as_maps
from ._overlap import as_masks, hits, iou
from ._pairs import check_grid, image_rows, refuse_repeated_pairs

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""The grid of map thresholds [`tune_thresholds`][normgrad.metrics.tune_thresholds]
searches (CheXlocalize's)."""
CUTOFFS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""The grid of probability cutoffs it searches (CheXlocalize's ``arange(0, 0.9, 0.1)``)."""


#: What to do about a class index outside the classes.
_NUM_CLASSES = "pass num_classes= the number of classes"


def _vector(values: object, length: int, argument: str, expected: str) -> torch.Tensor:
    """``values`` as float64 if a tensor ``(length,)``; an error saying what was
    ``expected`` otherwise."""
    if not isinstance(values, torch.Tensor) or values.shape != (length,):
        raise ShapeError(
            f"{argument}: expected {expected}, got {describe(values)}",
            getattr(values, "shape", None),
        )
    return values.detach().to(torch.float64)


def _probabilities(probabilities: object, n: int) -> torch.Tensor:
    expected = f"a float tensor ({n},), the model's probability of each map's class"
    values = _vector(probabilities, n, "probabilities", expected)
    fix = "pass probabilities (a sigmoid or softmax of the logits), not logits"
    refuse_outside_unit(values, "probabilities", "probabilities", fix)
    return values


def _read(saliency: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps = as_maps(saliency)
    truth = as_masks(masks, "masks")
    if truth.shape != maps.shape:
        raise ShapeError(
            f"masks: expected the maps' shape {tuple(maps.shape)}, got {tuple(truth.shape)}",
            truth.shape,
        )
    return maps, to_device(truth, maps.device)


def _per_class(values: object, count: int, argument: str) -> torch.Tensor:
    expected = (
        f"a tensor ({count},), one value per class (pass num_classes= when a class has no map here)"
    )
    return _vector(values, count, argument, expected)


def class_means(values: torch.Tensor, classes: torch.Tensor, count: int) -> torch.Tensor:
    """The mean of ``values`` ``(..., M)`` per class ``(..., count)``, NaN left out (and
    NaN for a class without a value)."""
    scored = ~torch.isnan(values)
    shape = (*values.shape[:-1], count)
    total = values.new_zeros(shape).index_add_(-1, classes, torch.where(scored, values, 0))
    number = values.new_zeros(shape).index_add_(-1, classes, scored.to(values.dtype))
    return total / number


def _best(scores: torch.Tensor, grid: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid value of the first maximum of each class's scores ``(G, K)``, and that
    maximum (NaN for a class without a score)."""
    best = torch.nan_to_num(scores, nan=-1.0).argmax(dim=0)
    values = to_device(grid, scores.device, torch.float64)[best]
    return values, scores.gather(0, best[None])[0]


def gated(overlap: torch.Tensor, truth: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """IoU ``(M,)`` of predictions emptied where ``keep`` is False: 0 against a
    ground truth, NaN (not scored) without one."""
    empty = torch.where(truth.flatten(1).any(dim=1), 0.0, float("nan")).to(overlap)
    return torch.where(keep, overlap, empty)


def gate(
    masks: torch.Tensor,
    probabilities: torch.Tensor,
    cutoffs: torch.Tensor | float,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""CheXlocalize's probability gate: a mask is emptied where the model's probability
    of its class is at most the class's cutoff, $p \le c_k$, so that a segmentation agrees
    with the classifier (kept where $p > c_k$, as CheXlocalize's ``pred_prob > cutoff``).

    Args:
        masks: boolean masks ``(N, *spatial)`` (or ``(N, 1, *spatial)``).
        probabilities: the model's probability of each mask's class ``(N,)``, in
            ``[0, 1]``.
        cutoffs: one cutoff for all, or a tensor ``(K,)`` per class read by ``classes``
            (``(N,)`` per mask without ``classes``).
        classes: the class of each mask, int ``(N,)``.

    Returns:
        bool tensor ``(N, *spatial)``.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import gate
        >>> masks = torch.ones(2, 2, 2, dtype=torch.bool)
        >>> gated = gate(masks, torch.tensor([0.9, 0.3]), torch.tensor([0.5, 0.2]),
        ...              torch.tensor([0, 0]))
        >>> gated.flatten(1).any(dim=1).tolist()
        [True, False]
    """
    with deferred_checks():  # the call's checks read once, together
        kept = as_masks(masks, "masks")
        n = kept.shape[0]
        prob = to_device(_probabilities(probabilities, n), kept.device)
        cut = to_device(torch.as_tensor(cutoffs, dtype=torch.float64), kept.device)
        if classes is not None and cut.ndim == 1:
            fix = "pass one cutoff per class"
            cut = cut[check_classes(classes, n, cut.shape[0], fix, kept.device)[0]]
        if cut.shape not in ((), (n,)):
            raise ShapeError(
                f"cutoffs: expected a number or one cutoff per mask ({n},), or per class "
                f"with classes=, got shape {tuple(cut.shape)}",
                cut.shape,
            )
        keep = prob > cut.expand(n)
        return kept & keep.view(-1, *[1] * (kept.ndim - 1))


@dataclass(frozen=True)
class TunedThresholds:
    """Per-class settings tuned on a validation split, and the mIoU they reach there.

    Attributes:
        thresholds: the map threshold of each class ``(K,)`` (float64).
        gates: the probability cutoff of each class ``(K,)``; ``None`` without
            probabilities.
        miou: the validation mIoU of each class at its threshold, over the pairs with a
            ground truth ``(K,)``.
        gated_miou: the validation mIoU of each class over all pairs with its threshold
            and cutoff ``(K,)``; ``None`` without probabilities.
    """

    thresholds: torch.Tensor
    gates: torch.Tensor | None
    miou: torch.Tensor
    gated_miou: torch.Tensor | None


def tune_thresholds(
    saliency: torch.Tensor,
    masks: torch.Tensor,
    classes: torch.Tensor,
    probabilities: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    grid: tuple[float, ...] = THRESHOLDS,
    cutoffs: tuple[float, ...] = CUTOFFS,
    smoothing: int | None = None,
) -> TunedThresholds:
    r"""CheXlocalize's tuning: per class, the map threshold and the probability cutoff
    that maximise the mIoU on a validation split.

    The threshold $t_k$ of class $k$ is the value of ``grid`` whose masks
    $m > t_k$ (maps min-max normalised, [`binarize`][normgrad.metrics.binarize]) have
    the highest mean IoU over the class's pairs with a ground truth; then, with those
    masks, the cutoff $c_k$ of ``cutoffs`` whose gate (a mask is emptied where the
    model's probability is at most $c_k$) gives the highest mean IoU over all the class's
    pairs (two empty masks are not scored, so a gate removes false positives from negative
    images at the cost of true positives). The first (lowest) of equal maxima wins.

    Args:
        saliency: maps ``(M, 1, *spatial)`` or ``(M, *spatial)``, one per (image, class)
            pair, 2-D or 3-D.
        masks: the ground-truth segmentation of each pair, boolean ``(M, *spatial)``.
        classes: the class each map explains, int ``(M,)`` in ``[0, K)``.
        probabilities: the model's probability of each pair's class ``(M,)`` in
            ``[0, 1]``; ``None``: no gate is tuned.
        num_classes: ``K`` (default ``classes.max() + 1``).
        grid: the map thresholds searched, in ``[0, 1]`` (at least one).
        cutoffs: the probability cutoffs searched, in ``[0, 1]`` (at least one).
        smoothing: as for [`binarize`][normgrad.metrics.binarize].

    Returns:
        [`TunedThresholds`][normgrad.metrics.TunedThresholds]: thresholds and gates to pass to
        [`chexlocalize`][normgrad.metrics.chexlocalize] on another split.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import tune_thresholds
        >>> maps = torch.zeros(2, 1, 8, 8); maps[:, 0, :4] = 0.5; maps[:, 0, :2] = 1
        >>> masks = torch.zeros(2, 8, 8, dtype=torch.bool); masks[:, :2] = True
        >>> tune_thresholds(maps, masks, torch.tensor([0, 0])).thresholds.tolist()
        [0.5]
    """
    grid, cutoffs = check_grid(grid, "grid"), check_grid(cutoffs, "cutoffs")
    with deferred_checks():  # the call's checks read once, together
        maps, truth = _read(saliency, masks)
        labels, count = check_classes(
            classes, maps.shape[0], num_classes, _NUM_CLASSES, maps.device
        )
        normalized = min_max(box_smooth(maps, smoothing) if smoothing is not None else maps)
        present = truth.flatten(1).any(dim=1)
        overlaps = torch.stack([iou(normalized > t, truth) for t in grid])  # (G, M)
        positive = torch.where(present, overlaps, float("nan"))
        thresholds, miou = _best(class_means(positive, labels, count), grid)
        if probabilities is None:
            return TunedThresholds(thresholds, None, miou, None)
        prob = to_device(_probabilities(probabilities, maps.shape[0]), maps.device)
        overlap = iou(normalized > thresholds[labels].view(-1, *[1] * (maps.ndim - 1)), truth)
        gated_scores = class_means(
            torch.stack([gated(overlap, truth, prob > c) for c in cutoffs]), labels, count
        )
        gates, best = _best(gated_scores, cutoffs)
        return TunedThresholds(thresholds, gates, miou, best)


@dataclass(frozen=True)
class CheXlocalizeScore:
    """One score of the protocol: per pair, and its means per class and overall.

    Attributes:
        values: the score of each (image, class) pair ``(M,)`` (float64; NaN: not
            scored).
        per_class: the mean per class and its bootstrap interval, ``(K,)`` each.
        overall: the mean over every pair scored and its interval.
    """

    values: torch.Tensor
    per_class: Interval
    overall: Interval


@dataclass(frozen=True)
class CheXlocalizeResult:
    """The protocol's scores (Saporta et al., 2022).

    Attributes:
        miou: IoU over every pair with a prediction or a ground truth (two empty masks
            are not scored).
        miou_true_positive: IoU over the true positives: pairs whose prediction and
            ground truth are both non-empty.
        hit_rate: the hit over every pair with a ground truth.
        hit_rate_true_positive: the hit over the true positives.
        masks: the predicted segmentations, boolean ``(M, *spatial)``.
    """

    miou: CheXlocalizeScore
    miou_true_positive: CheXlocalizeScore
    hit_rate: CheXlocalizeScore
    hit_rate_true_positive: CheXlocalizeScore
    masks: torch.Tensor


def _table(
    values: torch.Tensor, rows: torch.Tensor, classes: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """Values ``(M,)`` placed in a table ``shape`` ``(R, K)`` by row and class (NaN
    elsewhere)."""
    table = values.new_full(shape, float("nan"))
    return table.index_put_((rows.long(), classes), values)


def _score(
    values: torch.Tensor,
    rows: torch.Tensor,
    classes: torch.Tensor,
    shape: tuple[int, int],
    draw: tuple[int, float, int],
) -> CheXlocalizeScore:
    table = _table(values, rows, classes, shape)
    return CheXlocalizeScore(
        values, bootstrap_mean(table, *draw), bootstrap_mean(table, *draw, pooled=True)
    )


def chexlocalize(
    saliency: torch.Tensor,
    masks: torch.Tensor,
    classes: torch.Tensor,
    probabilities: torch.Tensor | None = None,
    *,
    thresholds: str | float | torch.Tensor = "otsu",
    gates: torch.Tensor | None = None,
    smoothing: int | None = None,
    num_classes: int | None = None,
    images: torch.Tensor | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> CheXlocalizeResult:
    r"""CheXlocalize's protocol: segmentations from maps, scored by IoU and hit rate.

    Each map (one per image and class) is min-max normalised and thresholded
    ([`binarize`][normgrad.metrics.binarize]: Otsu's, a number, or a threshold per
    class, e.g. from [`tune_thresholds`][normgrad.metrics.tune_thresholds] on a
    validation split); with ``gates``, a mask is emptied where the model's probability
    of its class is at most the class's cutoff. Scores per pair:
    [`iou`][normgrad.metrics.iou] with the ground truth (two empty masks are not scored)
    and [`hit_rate`][normgrad.metrics.hit_rate] (the map's maximum in the ground truth;
    pairs without a ground truth are not scored); each on all pairs and on the true
    positives (prediction and ground truth both non-empty). Means per class and over
    all pairs scored come with bootstrap percentile intervals: images (``images``, else
    pairs) resampled with replacement, every class of an image together, as CheXlocalize
    does ([`bootstrap_mean`][normgrad.metrics.bootstrap_mean]).

    Args:
        saliency: maps ``(M, 1, *spatial)`` or ``(M, *spatial)``, 2-D or 3-D, one per
            (image, class) pair.
        masks: ground-truth segmentations, boolean ``(M, *spatial)``.
        classes: the class of each pair, int ``(M,)`` in ``[0, K)``.
        probabilities: the model's probability of each pair's class ``(M,)`` in
            ``[0, 1]``; needed with ``gates``.
        thresholds: ``"otsu"``, a number in ``[0, 1]``, or a tensor ``(K,)`` per class.
        gates: the probability cutoff of each class ``(K,)``; ``None``: no gate.
        smoothing: as for [`binarize`][normgrad.metrics.binarize].
        num_classes: ``K`` (default ``classes.max() + 1``).
        images: the image of each pair, int ``(M,)`` (at most one pair per image and
            class); ``None``: each pair its own image.
        resamples: bootstrap resamples (an int >= 0).
        confidence: the intervals' level, in (0, 1).
        seed: seed of the resampling.

    Returns:
        [`CheXlocalizeResult`][normgrad.metrics.CheXlocalizeResult].

    Examples:
        >>> import torch
        >>> from normgrad.metrics import chexlocalize
        >>> maps = torch.zeros(2, 1, 8, 8); maps[:, 0, :2] = 1
        >>> masks = torch.zeros(2, 8, 8, dtype=torch.bool); masks[0, :4] = True
        >>> r = chexlocalize(maps, masks, torch.tensor([0, 1]))
        >>> r.miou.values.tolist(), r.hit_rate.values.tolist()
        ([0.5, 0.0], [1.0, nan])
        >>> r.miou.per_class.mean.tolist()
        [0.5, 0.0]
    """
    with deferred_checks():  # the call's checks read once, together
        maps, truth = _read(saliency, masks)
        m = maps.shape[0]
        labels, count = check_classes(classes, m, num_classes, _NUM_CLASSES, maps.device)
        if isinstance(thresholds, torch.Tensor):
            thresholds = to_device(_per_class(thresholds, count, "thresholds"), maps.device)[labels]
        predicted = binarize(maps, thresholds, smoothing=smoothing)
        if gates is not None:
            if probabilities is None:
                raise ArgumentTypeError(
                    "probabilities: expected the model's probability of each pair's class "
                    "with gates=, got None"
                )
            cutoffs = _per_class(gates, count, "gates")
            predicted = gate(predicted, probabilities, cutoffs, labels)
        overlap = iou(predicted, truth)
        both = predicted.flatten(1).any(dim=1) & truth.flatten(1).any(dim=1)
        hit = hits(maps, truth)
        nan = torch.full_like(overlap, float("nan"))
        rows, size = (  # the tables' rows: one per image
            (torch.arange(m, device=maps.device), m)
            if images is None
            else image_rows(images, m, maps.device)
        )
        if images is not None:
            refuse_repeated_pairs(rows * count + labels, count)
        draw, shape = (resamples, confidence, seed), (size, count)
        return CheXlocalizeResult(
            _score(overlap, rows, labels, shape, draw),
            _score(torch.where(both, overlap, nan), rows, labels, shape, draw),
            _score(hit, rows, labels, shape, draw),
            _score(torch.where(both, hit, nan), rows, labels, shape, draw),
            predicted,
        )
