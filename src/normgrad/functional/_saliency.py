"""From raw maps to saliency: upsampling, min-max normalisation, constant maps, fusion."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._errors import InvalidArgumentError
from .._transfer import to_device

# A per-layer map whose spread (max - min) is at most this many machine epsilons of its
# magnitude is treated as constant: the spread is rounding noise, not signal...
_CONSTANT_ULPS = 64
# ... but never more than this fraction of its magnitude: 64 epsilons are 6 % of a float16
# value and 50 % of a bfloat16 one, far more than rounding noise.
_CONSTANT_CAP = 2.0**-7


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


def scale_to_unit(maps: torch.Tensor) -> torch.Tensor:
    """Divide each sample by its largest magnitude, so its values lie in ``[-1, 1]``.

    The units of the map (a score times 1e-6, raw counts, Hounsfield units) drop out here,
    before any arithmetic could underflow or overflow: every later step is scale-free.
    An all-zero sample stays zero.
    """
    low, high = _per_sample_extrema(maps)
    scale = torch.maximum(low.abs(), high.abs())
    return maps / torch.where(scale > 0, scale, torch.ones_like(scale))


def min_max_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max normalisation: ``(m - min) / (max - min)``.

    Scale-free: each sample is first divided by its largest magnitude
    ([`functional.scale_to_unit`][normgrad.functional.scale_to_unit]), so a map spans
    exactly ``[0, 1]`` whatever its units or dtype, for values from the smallest to the
    largest the dtype holds. A sample whose values are all equal has no spread to normalise
    and becomes all zero. (The reference code adds 1e-8 to the denominator, which leaves a
    map of small values far below 1.)

    Args:
        maps: tensor ``(N, ...)``; each sample is normalised over all its other dims.

    Returns:
        Tensor of the same shape and dtype: minimum 0 and maximum exactly 1 per sample,
        or all zero for a sample with equal values.

    Examples:
        >>> import torch
        >>> from normgrad.functional import min_max_normalize
        >>> maps = torch.tensor([[1e-30, 3e-30, 2e-30], [5.0, 5.0, 5.0]])
        >>> min_max_normalize(maps)
        tensor([[0.0000, 1.0000, 0.5000],
                [0.0000, 0.0000, 0.0000]])
    """
    unit = scale_to_unit(maps)
    low, high = _per_sample_extrema(unit)
    spread = high - low
    out = (unit - low) / torch.where(spread > 0, spread, torch.ones_like(spread))
    return out


def is_constant(maps: torch.Tensor) -> torch.Tensor:
    """Which samples of ``maps`` ``(N, ...)`` are constant up to rounding noise.

    A sample is constant when its spread ``max - min`` is at most 64 machine epsilons of
    its largest magnitude, and at most 2**-7 of it (the cap matters for float16 and
    bfloat16 only), or it is all zero. The rule is relative, and evaluated on the
    sample divided by its largest magnitude
    ([`functional.scale_to_unit`][normgrad.functional.scale_to_unit]), so it does not depend on the
    map's units: no underflow for tiny values, no overflow for huge ones. Such a map carries no
    spatial information.

    Returns:
        Bool tensor ``(N,)``.
    """
    # half precision is checked in float32, so that the division adds no rounding of its own
    wide = maps.float() if torch.finfo(maps.dtype).bits < 32 else maps
    low, high = _per_sample_extrema(scale_to_unit(wide))
    tol = min(_CONSTANT_ULPS * torch.finfo(maps.dtype).eps, _CONSTANT_CAP)
    return ((high - low) <= tol).flatten()


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
        keep = to_device(torch.stack(list(informative)), stacked.device)
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
    raw_maps: Sequence[torch.Tensor], size: Sequence[int]
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Turn raw per-layer maps into one saliency map, as in the paper's protocol.

    Each map is scaled to ``[-1, 1]``
    ([`functional.scale_to_unit`][normgrad.functional.scale_to_unit], so that no step depends on its
    units), upsampled to ``size``, min-max normalised per sample, and the maps are fused by their
    geometric mean. A map that is constant for a sample (see
    [`is_constant`][normgrad.functional.is_constant]) normalises to all zeros and is neutral in the
    fusion.

    Args:
        raw_maps: J tensors ``(N, 1, *spatial_j)``, e.g. from
            [`normgrad_map`][normgrad.functional.normgrad_map].
        size: the input's spatial size.

    Returns:
        ``(saliency, layer_maps, informative)``: the fused map ``(N, 1, *size)`` in
        ``[0, 1]``, the J normalised upsampled maps, and J bool tensors ``(N,)`` telling
        which samples' maps were informative (not constant).
    """
    layer_maps: list[torch.Tensor] = []
    informative: list[torch.Tensor] = []
    for raw in raw_maps:
        normalized, varies = _normalized_layer(raw, size)
        layer_maps.append(normalized)
        informative.append(varies)
    if len(layer_maps) == 1:
        return layer_maps[0], layer_maps, informative
    return _fused(layer_maps, informative), layer_maps, informative


def _normalized_layer(raw: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``min_max_normalize(upsample(scale_to_unit(raw), size))``, zero where ``raw`` is
    constant, and ``~is_constant(raw)``, with 14 kernels (four on maps of the input's size).

    The extrema of ``raw`` are read once: dividing by a positive number is monotone in
    floating point, so the extrema of the unit map are those of ``raw`` divided by its
    scale, exactly. A constant sample is divided by infinity before it is upsampled (all
    zero from then on: its spread is 0, and a spread of 0 divides by infinity). Upsampling
    keeps the unit map in ``[-1, 1]``, where min-max normalisation needs no second
    scaling."""
    low, high = _per_sample_extrema(raw)
    # the largest magnitude, exactly max(high, -low), in one kernel
    scale = torch.linalg.vector_norm(raw.flatten(1), math.inf, dim=1).view(low.shape)
    if torch.finfo(raw.dtype).bits < 32:  # checked in float32 (see is_constant)
        varies = ~is_constant(raw)
    else:
        tol = min(_CONSTANT_ULPS * torch.finfo(raw.dtype).eps, _CONSTANT_CAP)
        # an all-zero sample gives 0 / 0 = NaN, which is not > tol: constant, as it is
        varies = ((high - low) / scale > tol).flatten()
    view = (-1,) + (1,) * (raw.ndim - 1)
    unit = raw / torch.where(varies.view(view), scale, math.inf)
    up = upsample(unit, size)
    low, high = _per_sample_extrema(up)
    spread = high - low
    return (up - low) / spread.masked_fill(spread == 0, math.inf), varies


def _fused(maps: Sequence[torch.Tensor], informative: Sequence[torch.Tensor]) -> torch.Tensor:
    """``fuse_geometric_mean(maps, informative)`` for normalised layer maps, which are all
    zero where not informative: such a map becomes all one (log 0, neutral) by one addition,
    unless no map of the sample is informative (its mean is then exp(-inf) = 0)."""
    stacked = torch.stack(list(maps))
    keep = torch.stack(list(informative))
    count = keep.sum(dim=0)
    neutral = ~keep & (count > 0)
    view = keep.shape + (1,) * (stacked.ndim - 2)
    logs = (stacked + neutral.view(view)).log_()
    return (logs.sum(dim=0) / count.clamp_min(1).view(view[1:])).exp_()
