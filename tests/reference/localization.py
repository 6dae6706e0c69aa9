"""Literal references of the localisation metrics (CheXlocalize's protocol, AUPRC).

Every function works on one map (a float64 tensor of any number of axes) and loops over
its pixels, histogram bins or thresholds as the definitions read.
"""

from __future__ import annotations

import itertools
import math

import torch


def pixels(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every index of ``shape`` in row-major order."""
    return list(itertools.product(*(range(s) for s in shape)))


def min_max(m: torch.Tensor) -> torch.Tensor:
    """(m - min) / (max - min) pixel by pixel; all zero when constant."""
    values = [float(m[p]) for p in pixels(tuple(m.shape))]
    low, high = min(values), max(values)
    out = torch.zeros(m.shape, dtype=torch.float64)
    for p in pixels(tuple(m.shape)):
        out[p] = 0.0 if high == low else (float(m[p]) - low) / (high - low)
    return out


def box_smooth(m: torch.Tensor, size: int) -> torch.Tensor:
    """The mean of each pixel's window, indices mirrored without the edge (reflect 101)."""
    pad = size // 2

    def mirror(i: int, n: int) -> int:
        if n == 1:
            return 0
        while i < 0 or i >= n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i

    out = torch.zeros(m.shape, dtype=torch.float64)
    for p in pixels(tuple(m.shape)):
        total = 0.0
        for offset in itertools.product(range(-pad, pad + 1), repeat=m.ndim):
            q = tuple(mirror(a + o, n) for a, o, n in zip(p, offset, m.shape))
            total += float(m[q])
        out[p] = total / size**m.ndim
    return out


def otsu_mask(m: torch.Tensor) -> torch.Tensor:
    """Otsu's mask of one map: levels floor(255 * normalised), the first level t of the
    largest between-class variance q1 q2 (mu1 - mu2)^2 (classes <= t and > t, each of
    weight at least float32's epsilon), pixels above t."""
    norm = min_max(m)
    levels = torch.zeros(m.shape, dtype=torch.long)
    for p in pixels(tuple(m.shape)):
        levels[p] = min(255, math.floor(float(norm[p]) * 255))
    count = [0] * 256
    for p in pixels(tuple(m.shape)):
        count[int(levels[p])] += 1
    total = sum(count)
    best_t, best = 0, 0.0
    eps = float(torch.finfo(torch.float32).eps)
    for t in range(256):
        q1 = sum(count[: t + 1]) / total
        q2 = 1 - q1
        if q1 < eps or q2 < eps:
            continue
        mu1 = sum(i * count[i] for i in range(t + 1)) / total / q1
        mu2 = sum(i * count[i] for i in range(t + 1, 256)) / total / q2
        sigma = q1 * q2 * (mu1 - mu2) ** 2
        if sigma > best:
            best_t, best = t, sigma
    return levels > best_t


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A and B| / |A or B| counted pixel by pixel; NaN for two empty masks."""
    inter = union = 0
    for p in pixels(tuple(a.shape)):
        inter += int(bool(a[p]) and bool(b[p]))
        union += int(bool(a[p]) or bool(b[p]))
    return inter / union if union else float("nan")


def hit(m: torch.Tensor, mask: torch.Tensor) -> float:
    """1 when the first maximum (row-major) lies in the mask, 0 when not or when the map
    is constant, NaN for an empty mask."""
    if not any(bool(mask[p]) for p in pixels(tuple(m.shape))):
        return float("nan")
    best, where = -math.inf, None
    values = []
    for p in pixels(tuple(m.shape)):
        values.append(float(m[p]))
        if float(m[p]) > best:
            best, where = float(m[p]), p
    if min(values) == max(values):
        return 0.0
    return 1.0 if bool(mask[where]) else 0.0


def average_precision(m: torch.Tensor, mask: torch.Tensor) -> float:
    """Sum over the distinct scores, highest first, of (recall gained) x precision, each
    counted over the pixels scoring at least that much."""
    ps = pixels(tuple(m.shape))
    positives = sum(int(bool(mask[p])) for p in ps)
    if positives == 0:
        return float("nan")
    ap, last_recall = 0.0, 0.0
    for threshold in sorted({float(m[p]) for p in ps}, reverse=True):
        chosen = [p for p in ps if float(m[p]) >= threshold]
        tp = sum(int(bool(mask[p])) for p in chosen)
        recall = tp / positives
        ap += (recall - last_recall) * tp / len(chosen)
        last_recall = recall
    return ap


def mean_of_resamples(values: torch.Tensor, rows: torch.Tensor) -> list[float]:
    """The mean of each resample's values (rows drawn: ``rows`` (B, N)), NaN left out."""
    means = []
    for drawn in rows.tolist():
        kept = [float(values[i]) for i in drawn if not math.isnan(float(values[i]))]
        means.append(sum(kept) / len(kept) if kept else float("nan"))
    return means


def tune(
    maps: torch.Tensor,
    masks: torch.Tensor,
    classes: list[int],
    probabilities: list[float],
    grid: tuple[float, ...],
    cutoffs: tuple[float, ...],
) -> tuple[list[float], list[float]]:
    """Per class: the first grid threshold of the best mean IoU over pairs with a ground
    truth, then the first cutoff of the best mean IoU over all pairs (a mask emptied where
    the probability is at most the cutoff; two empty masks not scored)."""
    thresholds, gates = [], []
    for k in sorted(set(classes)):
        pairs = [i for i, c in enumerate(classes) if c == k]
        best_t, best = grid[0], -1.0
        for t in grid:
            scores = [iou(min_max(maps[i]) > t, masks[i]) for i in pairs if masks[i].any()]
            mean = sum(scores) / len(scores) if scores else -1.0
            if mean > best:
                best_t, best = t, mean
        thresholds.append(best_t)
        best_c, best = cutoffs[0], -1.0
        for c in cutoffs:
            scores = []
            for i in pairs:
                predicted = min_max(maps[i]) > best_t
                if probabilities[i] <= c:
                    predicted = torch.zeros_like(predicted)
                value = iou(predicted, masks[i])
                if not math.isnan(value):
                    scores.append(value)
            mean = sum(scores) / len(scores) if scores else -1.0
            if mean > best:
                best_c, best = c, mean
        gates.append(best_c)
    return thresholds, gates
