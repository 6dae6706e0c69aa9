"""The random point of the Pointing Game, computed exactly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_spacing, check_tolerance
from ._pointing import within
from ._regions.prepared import PreparedRegions, Regions, prepare_regions


def random_point_hit_rate(
    regions: Regions,
    shape: Sequence[int],
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    """Exact expected Pointing Game hit rate of a uniformly random point, per sample.

    The fraction of pixels whose disk of radius ``tolerance`` (strictly) reaches a region
    pixel, or that are region pixels (a hit at any tolerance, 0 included): the area of
    the region dilated by the open disk, over the image area.
    Computed exactly with a Euclidean distance transform, not sampled.

    Args:
        regions: masks, boxes or prepared regions, as for
            [`pointing_game`][normgrad.metrics.pointing_game].
        shape: the spatial shape of the maps, ``(H, W)`` or ``(D, H, W)``.
        tolerance: as for [`pointing_game`][normgrad.metrics.pointing_game].
        spacing: as for [`pointing_game`][normgrad.metrics.pointing_game].

    Returns:
        float64 tensor ``(N,)`` of probabilities, NaN where the sample has no region.
    """
    from scipy.ndimage import distance_transform_edt

    tol = check_tolerance(tolerance)
    spatial = [int(s) for s in shape]
    space = check_spacing(spacing, len(spatial)) or [1.0] * len(spatial)
    count = regions.shape[0] if isinstance(regions, PreparedRegions) else len(regions)
    prepared = prepare_regions(regions, (count, *spatial))
    masks = prepared.to_masks().cpu().numpy()
    rates = np.full(masks.shape[0], np.nan)
    grid = np.indices(masks.shape[1:], dtype=np.float64)
    scale = np.asarray(space, dtype=np.float64).reshape(-1, *([1] * len(spatial)))
    for i, mask in enumerate(masks):  # one distance transform per image
        if mask.any():
            # the nearest region pixel of every pixel; its squared distance is compared with
            # tolerance * tolerance exactly as pointing_game does (within)
            nearest = distance_transform_edt(
                ~mask, sampling=space, return_distances=False, return_indices=True
            )
            dist2 = (((grid - nearest) * scale) ** 2).sum(axis=0)
            rates[i] = float(within(dist2, tol).mean())
    return torch.from_numpy(rates)
