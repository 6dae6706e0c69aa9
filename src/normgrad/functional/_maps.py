"""Raw per-layer maps: NormGrad for every VIL, Grad-CAM, and the channel reduction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_kernel_size
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ._vil import VIL, parse_vil


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
    check_kernel_size(kernel_size)
    if kernel_size == 1:
        return t
    spatial = t.ndim - 2
    pad = kernel_size // 2
    # 2-D pooling pads with zeros itself (one kernel); 3-D pooling refuses maps smaller
    # than the kernel even when padded, so volumes are padded explicitly.
    if spatial == 1:
        return F.avg_pool2d(
            t.unsqueeze(-1), (kernel_size, 1), stride=1, padding=(pad, 0), divisor_override=1
        ).squeeze(-1)
    if spatial == 2:
        return F.avg_pool2d(t, kernel_size, stride=1, padding=pad, divisor_override=1)
    padded = F.pad(t, [pad, pad] * spatial)
    return F.avg_pool3d(padded, kernel_size, stride=1, divisor_override=1)


def patch_norm(activation: torch.Tensor, kernel_size: int) -> torch.Tensor:
    r"""L2 norm of the zero-padded ``kernel_size`` patch around each position.

    Equals ``unfold(activation, kernel_size, padding=kernel_size // 2).norm(dim=1)`` but
    computed as $\sqrt{\mathrm{box}_K(\sum_c x_c^2)}$, without the unfolded tensor.

    Args:
        activation: tensor ``(N, C, *spatial)``.
        kernel_size: odd patch width.

    Returns:
        Tensor ``(N, 1, *spatial)``, non-negative.
    """
    _check_maps_input("activation", activation)
    check_kernel_size(kernel_size)
    norm = _channel_norm(activation)
    if kernel_size == 1:  # the patch is the position itself
        return norm
    # a sum of squares in a window (pooling sums it directly) is never negative
    return box_sum(norm.square(), kernel_size).sqrt()


def scaling_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""NormGrad with a scaling VIL: $m(u) = \lVert g_u \odot x_u \rVert_2$.

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

    $m(u) = \lVert g_u \rVert \, \lVert \mathrm{unfold}_K(x)_u \rVert$;
    ``kernel_size=1`` is the ``conv1x1`` VIL, $\lVert g_u \rVert \lVert x_u \rVert$.

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
            [`VIL`][normgrad.functional.VIL].

    Returns:
        Tensor ``(N, 1, *spatial)``, non-negative, at the layer's resolution.
    """
    spec = parse_vil(vil)
    spec.check_dims(activation.ndim - 2, "activation", activation.shape)
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
    r"""The signed Grad-CAM map $\sum_k \alpha_k A_k$ with $\alpha_k = \bar g_k$.

    $\bar g_k$ is the spatial mean of the gradient of channel ``k``.

    Grad-CAM (Selvaraju et al., 2017) is ``ReLU`` of this map, upsampled to the input.

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.
        gradient: the score's gradient with respect to it, same shape.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution.
    """
    _check_pair(activation, gradient)
    dtype = _compute_dtype(activation.dtype)
    spatial = tuple(range(2, activation.ndim))
    weights = gradient.to(dtype).mean(dim=spatial, keepdim=True)
    return (weights * activation.to(dtype)).sum(dim=1, keepdim=True)
