"""Literal references of the perturbation methods (Occlusion, RISE), one image and one
window or mask at a time, in float64.

``score(image)`` is the target's score of one image ``(C, *spatial)`` as a float.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as tf

Score = Callable[[torch.Tensor], float]


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts along an axis: 0, stride, 2 stride, ... until a window reaches the
    border (the last may stick out: it is cut off there)."""
    starts = [0]
    while starts[-1] + window < size:
        starts.append(starts[-1] + stride)
    return starts


def reference_occlusion(
    score: Score,
    image: torch.Tensor,
    window: Sequence[int],
    stride: Sequence[int],
    baseline: float | torch.Tensor,
) -> torch.Tensor:
    """Occlusion of one image ``(C, *spatial)``: for every window position, the window
    (cut at the border) is set to ``baseline`` in every channel, and the score's drop is
    added to each of its pixels; each pixel's sum is divided by the number of windows
    that covered it. Returns ``(*spatial)``."""
    image = image.double()
    spatial = tuple(image.shape[1:])
    cover = torch.as_tensor(baseline, dtype=torch.float64).expand_as(image)
    clean = score(image)
    total = torch.zeros(spatial, dtype=torch.float64)
    count = torch.zeros(spatial, dtype=torch.float64)
    axes = [_starts(s, w, st) for s, w, st in zip(spatial, window, stride)]
    for starts in itertools.product(*axes):
        region = tuple(slice(a, a + w) for a, w in zip(starts, window))
        occluded = image.clone()
        occluded[(slice(None), *region)] = cover[(slice(None), *region)]
        drop = clean - score(occluded)
        for pixel in itertools.product(*(range(s) for s in spatial)):
            if all(a <= u < a + w for u, a, w in zip(pixel, starts, window)):
                total[pixel] += drop
                count[pixel] += 1
    return total / count


def reference_rise_mask(
    grid: torch.Tensor, shift: Sequence[int], cell: Sequence[int], size: Sequence[int]
) -> torch.Tensor:
    """One RISE mask: the binary ``grid`` ``(*cells)`` upsampled ``cell`` times by
    (bi/tri)linear interpolation (``F.interpolate``, ``align_corners=False``), then the
    window of ``size`` from ``shift`` cut out."""
    up = [g * c for g, c in zip(grid.shape, cell)]
    mode = {2: "bilinear", 3: "trilinear"}[grid.ndim]
    big = tf.interpolate(grid.double()[None, None], size=up, mode=mode, align_corners=False)
    region = tuple(slice(d, d + s) for d, s in zip(shift, size))
    return big[(0, 0, *region)]


def reference_rise(
    score: Score,
    image: torch.Tensor,
    grids: torch.Tensor,
    shifts: torch.Tensor,
    cell: Sequence[int],
    p: float,
) -> torch.Tensor:
    """RISE of one image ``(C, *spatial)`` from its grids ``(n, *cells)`` and shifts
    ``(n, ndim)``: the sum over masks of the score of the masked image times the mask,
    divided by ``p * n``. Returns ``(*spatial)``."""
    image = image.double()
    size = tuple(image.shape[1:])
    total = torch.zeros(size, dtype=torch.float64)
    for grid, shift in zip(grids, shifts):
        mask = reference_rise_mask(grid, [int(d) for d in shift], cell, size)
        total += score(image * mask) * mask
    return total / (p * len(grids))


def logit_score(model: torch.nn.Module, target: int) -> Score:
    """The score of ``target``'s logit, the model in eval mode, one image at a time."""

    def score(image: torch.Tensor) -> float:
        with torch.no_grad():
            return float(model.eval()(image[None])[0, target])

    return score


def probability_score(model: torch.nn.Module, target: int) -> Score:
    """The softmax probability of ``target``, the model in eval mode, one image at a time."""

    def score(image: torch.Tensor) -> float:
        with torch.no_grad():
            return float(torch.softmax(model.eval()(image[None])[0], dim=0)[target])

    return score
