"""Rank correlation between paired maps (randomisation sanity checks)."""

from __future__ import annotations

import numpy as np
import torch

from .._errors import ShapeError
from .._transfer import to_device


def rank_correlation(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between paired maps, per sample (ties get average ranks).

    Args:
        maps_a: maps ``(N, ...)``.
        maps_b: maps of the same shape.

    Returns:
        float64 tensor ``(N,)``; NaN where a map is constant.
    """
    from scipy.stats import rankdata

    if maps_a.shape != maps_b.shape:
        raise ShapeError(
            f"maps_b: expected the shape of maps_a {tuple(maps_a.shape)}, "
            f"got {tuple(maps_b.shape)}",
            maps_b.shape,
        )
    a_flat = maps_a.detach().flatten(1).double()
    b_flat = to_device(maps_b.detach().flatten(1), a_flat.device, torch.float64)
    both = torch.stack([a_flat, b_flat]).cpu().numpy()  # one copy to the host
    a, b = rankdata(both[0], axis=1), rankdata(both[1], axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (a * b).sum(axis=1) / denom
    return torch.from_numpy(rho)
