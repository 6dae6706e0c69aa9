r"""The functional core of normgrad: pure tensor maths, no models, no hooks.

Given a layer's activation :math:`x` and the gradient :math:`g = \partial s / \partial x`
of a score :math:`s`, both of shape ``(N, C, *spatial)``, NormGrad measures at every
spatial position :math:`u` the Frobenius norm of the gradient that a *virtual identity
layer* (VIL) inserted after the layer would receive:

=============  ================================================================
VIL            map :math:`m(u)`
=============  ================================================================
``scaling``    :math:`\lVert g_u \odot x_u \rVert_2`
``conv1x1``    :math:`\lVert g_u \rVert_2 \, \lVert x_u \rVert_2`
``convKxK``    :math:`\lVert g_u \rVert_2 \, \lVert \mathrm{unfold}_K(x)_u \rVert_2`
=============  ================================================================

Norms are L2 over channels (not squared). The patch norm of ``convKxK`` (``K`` odd, zero
padding ``K // 2``, stride 1) is computed as the square root of a ``K``-wide box sum of
the channel-summed squares, :math:`\sqrt{\mathrm{box}_K(\sum_c x_c^2)}`, an exact
identity that needs ``O(H W)`` memory instead of the ``O(K^2 C H W)`` of ``unfold``.

Every function accepts 1, 2 or 3 spatial dimensions (``(N, C, L)``, ``(N, C, H, W)``,
``(N, C, D, H, W)``), runs on the device of its input and accepts float16, bfloat16,
float32 and float64. Half-precision inputs are computed and returned in float32, since
squared activations overflow float16; other inputs keep their dtype.

Example:
    >>> import torch
    >>> from normgrad import functional as F
    >>> x, g = torch.randn(2, 8, 7, 7), torch.randn(2, 8, 7, 7)
    >>> F.normgrad_map(x, g, "conv3x3").shape
    torch.Size([2, 1, 7, 7])
    >>> torch.allclose(F.normgrad_map(x, g, "conv1x1"),
    ...                g.norm(dim=1, keepdim=True) * x.norm(dim=1, keepdim=True))
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as tf

from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe

__all__ = [
    "VIL",
    "box_sum",
    "conv_map",
    "fuse_geometric_mean",
    "grad_cam_map",
    "is_constant",
    "layer_maps_to_saliency",
    "min_max_normalize",
    "normgrad_map",
    "parse_vil",
    "patch_norm",
    "reduce_channels",
    "scaling_map",
    "upsample",
]

#: Added to the denominator of the min-max normalisation.
EPS = 1e-8

# A per-layer map whose spread (max - min) is at most this many machine epsilons of its
# magnitude is treated as constant: the spread is rounding noise, not signal.
_CONSTANT_ULPS = 64

_VIL_PATTERN = re.compile(r"^conv(\d+)((?:x\d+)+)$")


class VIL(NamedTuple):
    """A parsed virtual identity layer: ``kind`` is ``"scaling"`` or ``"conv"``.

    ``kernel_size`` is 1 for ``scaling`` and ``conv1x1``. ``ndim`` is the number of
    spatial dimensions the name fixes (``"conv3x3x3"`` fixes 3), or ``None`` when the
    kernel applies to every spatial dimension of the input (``"conv3x3"`` on a volume
    is a 3x3x3 patch).
    """

    kind: str
    kernel_size: int
    ndim: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "scaling":
            return "scaling"
        dims = self.ndim if self.ndim is not None else 2
        return "conv" + "x".join([str(self.kernel_size)] * dims)


def parse_vil(vil: str | VIL) -> VIL:
    """Parse a VIL name: ``"scaling"``, ``"conv1x1"``, ``"conv3x3"`` or any odd ``"convKxK"``.

    ``"convKxKxK"`` is accepted for volumes. Raises :class:`InvalidArgumentError` for an
    unknown name or an even kernel.

    Example:
        >>> parse_vil("conv5x5")
        VIL(kind='conv', kernel_size=5, ndim=None)
    """
    if isinstance(vil, VIL):
        return vil
    if not isinstance(vil, str):
        raise ArgumentTypeError(
            f"vil: expected a string such as 'scaling', 'conv1x1' or 'conv3x3', got {describe(vil)}"
        )
    name = vil.strip().lower().replace("×", "x")
    if name == "scaling":
        return VIL("scaling", 1)
    match = _VIL_PATTERN.match(name)
    if match is None:
        raise InvalidArgumentError(
            f"vil: expected 'scaling', 'conv1x1', 'conv3x3' or 'convKxK' with K odd, got {vil!r}"
        )
    sizes = [int(match.group(1))] + [int(s) for s in match.group(2).split("x")[1:]]
    if len(set(sizes)) != 1:
        raise InvalidArgumentError(
            f"vil: expected the same kernel size in every dimension (e.g. 'conv3x3'), got {vil!r}"
        )
    kernel_size = sizes[0]
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise InvalidArgumentError(
            f"vil: expected an odd kernel size so the patch is centred on its position, "
            f"got {vil!r} (kernel size {kernel_size}); try 'conv{kernel_size + 1}x"
            f"{kernel_size + 1}'"
        )
    if len(sizes) > 3:
        raise InvalidArgumentError(f"vil: expected at most 3 spatial dimensions, got {vil!r}")
    ndim = None if len(sizes) == 2 else len(sizes)
    return VIL("conv", kernel_size, ndim)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if dtype in (torch.float32, torch.float64):
        return dtype
    raise InvalidArgumentError(
        f"expected a floating point tensor (float16, bfloat16, float32 or float64), "
        f"got dtype {dtype}"
    )


def _check_maps_input(name: str, tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ArgumentTypeError(f"{name}: expected a tensor, got {describe(tensor)}")
    if tensor.ndim not in (3, 4, 5):
        raise ShapeError(
            f"{name}: expected a tensor of shape (N, C, *spatial) with 1 to 3 spatial "
            f"dimensions, got shape {tuple(tensor.shape)}",
            tensor.shape,
        )
    _compute_dtype(tensor.dtype)


def _check_pair(activation: torch.Tensor, gradient: torch.Tensor) -> None:
    _check_maps_input("activation", activation)
    _check_maps_input("gradient", gradient)
    if activation.shape != gradient.shape:
        raise ShapeError(
            f"gradient: expected the shape of activation {tuple(activation.shape)}, "
            f"got {tuple(gradient.shape)}",
            gradient.shape,
        )


def _channel_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm over the channel dimension, keepdim, accumulated in the compute dtype."""
    norm: torch.Tensor = torch.linalg.vector_norm(
        t, dim=1, keepdim=True, dtype=_compute_dtype(t.dtype)
    )
    return norm


def box_sum(t: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Sum over every ``kernel_size``-wide window (odd), zero padded, stride 1.

    Args:
        t: tensor ``(N, C, *spatial)`` with 1 to 3 spatial dimensions.
        kernel_size: odd window width, applied to every spatial dimension.

    Returns:
        Tensor of the same shape and dtype: ``out[..., u] = sum of t over the window at u``.
    """
    if kernel_size == 1:
        return t
    spatial = t.ndim - 2
    pad = kernel_size // 2
    # Pad explicitly: pooling refuses maps smaller than the kernel even when padded.
    padded = tf.pad(t, [pad, pad] * spatial)
    if spatial == 1:
        return tf.avg_pool2d(
            padded.unsqueeze(-1), (kernel_size, 1), stride=1, divisor_override=1
        ).squeeze(-1)
    if spatial == 2:
        return tf.avg_pool2d(padded, kernel_size, stride=1, divisor_override=1)
    return tf.avg_pool3d(padded, kernel_size, stride=1, divisor_override=1)


def patch_norm(activation: torch.Tensor, kernel_size: int) -> torch.Tensor:
    r"""L2 norm of the zero-padded ``kernel_size`` patch around each position.

    Equals ``unfold(activation, kernel_size, padding=kernel_size // 2).norm(dim=1)`` but
    computed as :math:`\sqrt{\mathrm{box}_K(\sum_c x_c^2)}`, without the unfolded tensor.

    Args:
        activation: tensor ``(N, C, *spatial)``.
        kernel_size: odd patch width.

    Returns:
        Tensor ``(N, 1, *spatial)``, non-negative.
    """
    _check_maps_input("activation", activation)
    _check_kernel_size(kernel_size)
    squares = _channel_norm(activation).square()
    # Rounding in the box sum may leave a tiny negative where the true value is 0.
    return box_sum(squares, kernel_size).clamp_min(0).sqrt()


def _check_kernel_size(kernel_size: int) -> None:
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool):
        raise ArgumentTypeError(
            f"kernel_size: expected an odd positive int, got {describe(kernel_size)}"
        )
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise InvalidArgumentError(f"kernel_size: expected an odd positive int, got {kernel_size}")


def scaling_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""NormGrad with a scaling VIL: :math:`m(u) = \lVert g_u \odot x_u \rVert_2`.

    Args:
        activation: tensor ``(N, C, *spatial)``.
        gradient: tensor of the same shape.

    Returns:
        Tensor ``(N, 1, *spatial)``, non-negative.
    """
    _check_pair(activation, gradient)
    dtype = _compute_dtype(activation.dtype)
    return _channel_norm(gradient.to(dtype) * activation.to(dtype))


def conv_map(
    activation: torch.Tensor, gradient: torch.Tensor, kernel_size: int = 1
) -> torch.Tensor:
    r"""NormGrad with a ``K x K`` convolution VIL.

    :math:`m(u) = \lVert g_u \rVert \, \lVert \mathrm{unfold}_K(x)_u \rVert`;
    ``kernel_size=1`` is the ``conv1x1`` VIL, :math:`\lVert g_u \rVert \lVert x_u \rVert`.

    Args:
        activation: tensor ``(N, C, *spatial)``.
        gradient: tensor of the same shape.
        kernel_size: odd patch width ``K``.

    Returns:
        Tensor ``(N, 1, *spatial)``, non-negative.
    """
    _check_pair(activation, gradient)
    return _channel_norm(gradient) * patch_norm(activation, kernel_size)


def normgrad_map(activation: torch.Tensor, gradient: torch.Tensor, vil: str | VIL) -> torch.Tensor:
    """The raw NormGrad map of one layer for the VIL named ``vil``.

    Args:
        activation: the layer's output, tensor ``(N, C, *spatial)``.
        gradient: the score's gradient with respect to ``activation``, same shape.
        vil: ``"scaling"``, ``"conv1x1"``, ``"conv3x3"``, any odd ``"convKxK"``, or a
            :class:`VIL`.

    Returns:
        Tensor ``(N, 1, *spatial)``, non-negative, at the layer's resolution.
    """
    spec = parse_vil(vil)
    if spec.ndim is not None and spec.ndim != activation.ndim - 2:
        raise InvalidArgumentError(
            f"vil: {spec.name!r} needs {spec.ndim} spatial dimensions, got an activation "
            f"of shape {tuple(activation.shape)} ({activation.ndim - 2} spatial)"
        )
    if spec.kind == "scaling":
        return scaling_map(activation, gradient)
    return conv_map(activation, gradient, spec.kernel_size)


def reduce_channels(attribution: torch.Tensor) -> torch.Tensor:
    """Reduce an attribution ``(N, C, *spatial)`` to ``(N, 1, *spatial)`` by ``sum_c |a_c|``.

    The reduction the paper applies to every gradient-based map. Half-precision inputs are
    accumulated and returned in float32.
    """
    _check_maps_input("attribution", attribution)
    return attribution.abs().sum(dim=1, keepdim=True, dtype=_compute_dtype(attribution.dtype))


def grad_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""The signed Grad-CAM map :math:`\sum_k \alpha_k A_k` with :math:`\alpha_k = \bar g_k`.

    :math:`\bar g_k` is the spatial mean of the gradient of channel ``k``.

    Grad-CAM (Selvaraju et al., 2017) is ``ReLU`` of this map, upsampled to the input.

    Args:
        activation: the layer's output :math:`A`, tensor ``(N, C, *spatial)``.
        gradient: the score's gradient with respect to it, same shape.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution.
    """
    _check_pair(activation, gradient)
    dtype = _compute_dtype(activation.dtype)
    spatial = tuple(range(2, activation.ndim))
    weights = gradient.to(dtype).mean(dim=spatial, keepdim=True)
    return (weights * activation.to(dtype)).sum(dim=1, keepdim=True)


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize maps ``(N, 1, *spatial)`` to ``size`` by (bi/tri)linear interpolation.

    ``align_corners=False``, as in the reference protocol. Maps already of ``size`` are
    returned unchanged.
    """
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[2:]) == size:
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[maps.ndim - 2]
    return tf.interpolate(maps, size=size, mode=mode, align_corners=False)


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
    r"""Geometric mean :math:`\prod_j m_j^{1/J}` of maps with values in ``[0, 1]``.

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
    :func:`is_constant`) normalises to all zeros and is neutral in the fusion.

    Args:
        raw_maps: J tensors ``(N, 1, *spatial_j)``, e.g. from :func:`normgrad_map`.
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
