r"""Energy-based pointing game: how much of a map's positive mass lies on the regions."""

from __future__ import annotations

import torch

from .._errors import InvalidArgumentError
from ._maps import as_maps
from ._regions import Regions, prepare_regions


def energy_pointing_game(saliency: torch.Tensor, regions: Regions) -> torch.Tensor:
    r"""Fraction of each map's non-negative mass inside its regions (Wang et al., 2020).

    .. math:: E = \frac{\sum_{u \in R} \max(s_u, 0)}{\sum_u \max(s_u, 0)}

    over the pixels (voxels) :math:`u` of the map :math:`s` and the union :math:`R` of the
    sample's regions. Negative values count as zero. A map without positive mass (all
    zero, or all negative) puts none of it on the regions and scores 0, as a constant map
    scores a miss in the Pointing Game.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, finite.
        regions: as for :func:`pointing_game`: boolean masks, box tensors per sample, lists
            of :class:`Box`, :class:`Ellipse` and :class:`Polygon` per sample (2-D), or
            :class:`PreparedRegions`.

    Returns:
        float32 ``(N,)`` in ``[0, 1]`` on the maps' device; NaN where a sample has no region.

    Example:
        >>> maps = torch.tensor([[[1.0, 3.0], [-2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> masks = torch.tensor([[[False, True], [True, False]], [[True, False], [False, False]]])
        >>> energy_pointing_game(maps, masks)
        tensor([0.7500, 0.0000])
    """
    maps = as_maps(saliency)
    if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
        bad = int((~torch.isfinite(maps)).flatten(1).any(dim=1).sum())
        raise InvalidArgumentError(
            f"saliency: expected finite maps, got NaN or infinite values in {bad} map(s)"
        )
    prepared = prepare_regions(regions, maps.shape, maps.device)
    masks = prepared.to_masks()
    positive = maps.clamp_min(0).flatten(1)
    dtype = torch.float64 if positive.dtype == torch.float64 else torch.float32
    total = positive.sum(dim=1, dtype=dtype)
    inside = torch.where(masks.flatten(1), positive, 0).sum(dim=1, dtype=dtype)
    energy = torch.where(total > 0, inside / total.clamp_min(torch.finfo(dtype).tiny), 0.0)
    nan = torch.full_like(energy, float("nan"))
    return torch.where(prepared.present(), energy, nan).to(torch.float32)
