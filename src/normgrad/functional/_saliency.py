"""From raw maps to saliency: upsampling, min-max normalisation, constant maps, fusion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._errors import InvalidArgumentError

#: Added to the denominator of the min-max normalisation.
EPS = 1e-8

# A per-layer map whose spread (max - min) is at most this many machine epsilons of its
# magnitude is treated as constant: the spread is rounding noise, not signal.
_CONSTANT_ULPS = 64


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize maps ``(N, 1, *spatial)`` to ``size`` by (bi/tri)linear interpolation.

    ``align_corners=False``, as in the reference protocol. Maps already of ``size`` are
    returned unchanged.
    """
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[2:]) == size:
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[maps.ndim - 2]
    return F.interpolate(maps, size=size, mode=mode, align_corners=False)


def _per_sample_extrema(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = maps.flatten(1)
    low, high = flat.aminmax(dim=1)
    view = (-1,) + (1,) * (maps.ndim - 1)
    return low.view(view), high.view(view)


def min_max_normalize(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per-sample min-max normalisation: ``(m - min) / (max - min + eps)``.

    Args:
        maps: tensor ``(N, ...)``; each sample is normalised over all its other dims.
        eps: added to the denominator.

    Returns:
        Tensor of the same shape with values in ``[0, 1)``; a constant sample becomes 0.
    """
    low, high = _per_sample_extrema(maps)
    return (maps - low) / (high - low + eps)


def is_constant(maps: torch.Tensor) -> torch.Tensor:
    """Which samples of ``maps`` ``(N, ...)`` are constant up to rounding noise.

    A sample is constant when its spread ``max - min`` is at most 64 machine epsilons of
    its largest magnitude (or it is all zero). Such a map carries no spatial information.

    Returns:
        Bool tensor ``(N,)``.
    """
    low, high = _per_sample_extrema(maps)
    scale = torch.maximum(low.abs(), high.abs())
    tol = _CONSTANT_ULPS * torch.finfo(maps.dtype).eps
    return ((high - low) <= tol * scale).flatten()


def fuse_geometric_mean(
    maps: Sequence[torch.Tensor], informative: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    r"""Geometric mean $\prod_j m_j^{1/J}$ of maps with values in ``[0, 1]``.

    Args:
        maps: J tensors ``(N, 1, *spatial)`` of the same shape, values in ``[0, 1]``.
        informative: optionally J bool tensors ``(N,)``; a map that is not informative
            for a sample (a constant map) is left out of that sample's mean, so it is
            neutral instead of zeroing the product. A sample with no informative map
            gets an all-zero result.

    Returns:
        Tensor ``(N, 1, *spatial)`` with values in ``[0, 1]``.
    """
    if len(maps) == 0:
        raise InvalidArgumentError("maps: expected at least one map, got none")
    stacked = torch.stack(list(maps))
    if informative is None:
        keep = torch.ones(stacked.shape[:2], dtype=torch.bool, device=stacked.device)
    else:
        keep = torch.stack(list(informative)).to(stacked.device)
    view = keep.shape + (1,) * (stacked.ndim - 2)
    keep = keep.view(view)
    # log(0) = -inf is wanted (the mean is then 0); excluded maps contribute log(1) = 0.
    logs = torch.where(
        keep,
        stacked.clamp_min(0).log(),
        torch.zeros((), dtype=stacked.dtype, device=stacked.device),
    )
    count = keep.sum(dim=0)
    fused = (logs.sum(dim=0) / count.clamp_min(1)).exp()
    return torch.where(count > 0, fused, torch.zeros_like(fused))


def layer_maps_to_saliency(
    raw_maps: Sequence[torch.Tensor], size: Sequence[int], eps: float = EPS
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Turn raw per-layer maps into one saliency map, as in the paper's protocol.

    Each map is upsampled to ``size``, min-max normalised per sample, and the maps are
    fused by their geometric mean. A map that is constant for a sample (see
    [`is_constant`][normgrad.functional.is_constant]) normalises to all zeros and is neutral in the
    fusion.

    Args:
        raw_maps: J tensors ``(N, 1, *spatial_j)``, e.g. from
            [`normgrad_map`][normgrad.functional.normgrad_map].
        size: the input's spatial size.
        eps: added to the denominator of the normalisation.

    Returns:
        ``(saliency, layer_maps, informative)``: the fused map ``(N, 1, *size)`` in
        ``[0, 1]``, the J normalised upsampled maps, and J bool tensors ``(N,)`` telling
        which samples' maps were informative (not constant).
    """
    layer_maps: list[torch.Tensor] = []
    informative: list[torch.Tensor] = []
    for raw in raw_maps:
        constant = is_constant(raw)
        normalised = min_max_normalize(upsample(raw, size), eps)
        view = (-1,) + (1,) * (normalised.ndim - 1)
        normalised = torch.where(constant.view(view), torch.zeros_like(normalised), normalised)
        layer_maps.append(normalised)
        informative.append(~constant)
    if len(layer_maps) == 1:
        return layer_maps[0], layer_maps, informative
    return fuse_geometric_mean(layer_maps, informative), layer_maps, informative
