"""Separable filters of maps along every spatial axis, borders mirrored (box smoothing,
SSIM's Gaussian window)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Mirror = Callable[[torch.Tensor, int], torch.Tensor]
"""Indices ``(-r, ..., n - 1 + r)`` of an axis of length ``n`` to indices inside it."""


def reflect_101(index: torch.Tensor, length: int) -> torch.Tensor:
    """Mirrored without repeating the edge (``d c b | a b c d | c b a``: OpenCV's
    ``BORDER_REFLECT_101``, torch's ``reflect``), any distance out."""
    period = max(2 * (length - 1), 1)
    index = index.remainder(period)
    return torch.where(index >= length, period - index, index)


def symmetric(index: torch.Tensor, length: int) -> torch.Tensor:
    """Mirrored with the edge repeated (``c b a | a b c | c b a``: ``scipy.ndimage``'s
    ``reflect``), any distance out."""
    period = 2 * length
    index = index.remainder(period)
    return torch.where(index >= length, period - 1 - index, index)


def filter_axes(values: torch.Tensor, taps: Sequence[float], mirror: Mirror) -> torch.Tensor:
    """``values`` ``(N, C, *spatial)`` filtered by the odd ``taps`` along every spatial
    axis in turn (correlation, centred), borders mirrored by ``mirror``; same shape. Each
    axis is a weighted sum of shifted views of the padded values, one per tap (memory
    speed: no convolution of one channel)."""
    radius = len(taps) // 2
    weights = list(taps)
    for axis in range(2, values.ndim):
        length = values.shape[axis]
        index = mirror(torch.arange(-radius, length + radius, device=values.device), length)
        padded = values.index_select(axis, index)
        out = padded.narrow(axis, 0, length) * weights[0]
        for shift, weight in enumerate(weights[1:], start=1):
            out.add_(padded.narrow(axis, shift, length), alpha=weight)
        values = out
    return values
