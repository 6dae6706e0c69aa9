"""Separable filters of maps along every spatial axis, borders mirrored (box smoothing,
SSIM's Gaussian window)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as tf

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


def filter_axes(values: torch.Tensor, taps: torch.Tensor, mirror: Mirror) -> torch.Tensor:
    """``values`` ``(N, C, *spatial)`` filtered by the odd ``taps`` along every spatial
    axis in turn (correlation, centred), borders mirrored by ``mirror``; same shape."""
    radius = taps.numel() // 2
    kernel = taps.to(values.device, values.dtype).view(1, 1, -1)
    for axis in range(2, values.ndim):
        length = values.shape[axis]
        index = mirror(torch.arange(-radius, length + radius, device=values.device), length)
        moved = values.index_select(axis, index).movedim(axis, -1)
        rows = tf.conv1d(moved.reshape(-1, 1, moved.shape[-1]), kernel)
        values = rows.reshape(*moved.shape[:-1], length).movedim(-1, axis)
    return values
