"""Distances on the pixel (voxel) grid, shared by the centre map and the metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def squared_distances(
    points: torch.Tensor, spatial: Sequence[int], spacing: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared distance from each point to every pixel of a grid of size ``spatial``.

    Args:
        points: ``(M, ndim)`` coordinates in array order (may be fractional).
        spatial: the grid's size, ``(H, W)`` or ``(D, H, W)``.
        spacing: ``(ndim,)`` pixel sizes (default 1).

    Returns:
        float64 tensor ``(M, *spatial)`` on the points' device.
    """
    device = points.device
    dist2 = torch.zeros((points.shape[0], *spatial), dtype=torch.float64, device=device)
    for axis, size in enumerate(spatial):
        offsets = torch.arange(size, device=device, dtype=torch.float64)
        delta = offsets[None, :] - points[:, axis : axis + 1].to(torch.float64)
        if spacing is not None:
            delta = delta * spacing[axis]
        shape = [points.shape[0]] + [1] * len(spatial)
        shape[axis + 1] = size
        dist2 = dist2 + (delta**2).view(shape)
    return dist2
