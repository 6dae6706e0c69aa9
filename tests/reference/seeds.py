"""Literal references of the seeds the random explainers draw from: splitmix64 over a
running state, and an image's key read from its values' bits."""

from __future__ import annotations

import numpy as np
import torch

M64 = 2**64


def reference_seed(*values: int) -> int:
    """splitmix64's output function applied to a running state, one value at a time."""
    state = 0
    for value in values:
        state = (state + value % M64 + 0x9E3779B97F4A7C15) % M64
        state = (state ^ (state >> 30)) * 0xBF58476D1CE4E5B9 % M64
        state = (state ^ (state >> 27)) * 0x94D049BB133111EB % M64
        state = state ^ (state >> 31)
    return state


def reference_image_key(image: torch.Tensor) -> tuple[int, int, int]:
    """The image's values' bits in logical order, in 16-bit pieces from the low end: their
    count, their sum, and their sum weighted by 1 + (position mod 65521)."""
    values = image.contiguous().numpy().ravel()
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[values.itemsize]
    pieces = [
        (int(bits) >> shift) & 0xFFFF
        for bits in values.view(unsigned)
        for shift in range(0, 8 * values.itemsize, 16)
    ]
    weighted = sum(p * (1 + j % 65521) for j, p in enumerate(pieces))
    return len(pieces), sum(pieces), weighted
