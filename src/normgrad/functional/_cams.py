r"""Class activation maps beyond Grad-CAM: Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM,
Eigen-CAM and Score-CAM, from a layer's activation $A$ ``(N, C, *spatial)`` and the
gradient $g = \partial s / \partial A$ of the target's score (or, for Score-CAM, the
scores of the masked inputs).

Every function returns the signed map ``(N, 1, *spatial)`` at the layer's resolution,
before the ReLU that the explainers apply; sums $\sum_u$ run over the spatial positions
$u$ of one channel. Half-precision inputs are computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._errors import ShapeError
from ._maps import _check_maps_input, _check_pair, _compute_dtype
from ._saliency import is_constant, min_max_normalize, upsample


def _cast(activation: torch.Tensor, gradient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both tensors, checked, in the compute dtype."""
    _check_pair(activation, gradient)
    dtype = _compute_dtype(activation.dtype)
    return activation.to(dtype), gradient.to(dtype)


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.ndim))


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is not 0, else 0."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1), 0)


def _weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    r"""$\sum_k w_k A_k$ over the channels, ``(N, 1, *spatial)``."""
    return (weights * activation).sum(dim=1, keepdim=True)


def grad_cam_plus_plus_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""The signed Grad-CAM++ map $\sum_k w_k A_k$ (Chattopadhyay et al., WACV 2018).

    $w_k = \sum_u \alpha_{k,u} \, \mathrm{ReLU}(g_{k,u})$ with
    $\alpha_{k,u} = \dfrac{g_{k,u}^2}{2 g_{k,u}^2 + \left(\sum_v A_{k,v}\right) g_{k,u}^3}$
    ($0$ where the denominator is $0$).

    This is the paper's closed form (its Eq. 19): the general weights (its Eq. 10) need
    the second and third derivatives of the explained output $Y$; for $Y = \exp(s)$ they
    are $e^{s} g^2$ and $e^{s} g^3$ wherever the network after the layer is piecewise
    linear (ReLU), so the map needs only the gradient and is the paper's map divided by
    $e^{s}$ (a positive constant per sample, which the normalisation removes).
    pytorch-grad-cam implements the same closed form with $10^{-6}$ added to the
    denominator.

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.
        gradient: the score's gradient with respect to it, same shape.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution.

    Examples:
        >>> import torch
        >>> from normgrad.functional import grad_cam_plus_plus_map
        >>> a, g = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
        >>> grad_cam_plus_plus_map(a, g)  # alpha = 0.25 / (0.5 + 4 * 0.125) = 0.25
        tensor([[[[0.5000, 0.5000],
                  [0.5000, 0.5000]]]])
    """
    a, g = _cast(activation, gradient)
    square = g.square()
    total = a.sum(dim=_spatial(a), keepdim=True)
    alpha = _divide(square, 2 * square + total * square * g)
    weights = (alpha * g.clamp_min(0)).sum(dim=_spatial(a), keepdim=True)
    return _weighted_sum(weights, a)


def xgrad_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""The signed XGrad-CAM map $\sum_k w_k A_k$ (Fu et al., BMVC 2020).

    $w_k = \sum_u \dfrac{A_{k,u}}{\sum_v A_{k,v}} \, g_{k,u}$ ($0$ for a channel whose
    activations sum to $0$; pytorch-grad-cam adds $10^{-7}$ to that sum instead).

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.
        gradient: the score's gradient with respect to it, same shape.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution.

    Examples:
        >>> import torch
        >>> from normgrad.functional import xgrad_cam_map
        >>> a = torch.tensor([[[[1.0, 3.0]]]])
        >>> xgrad_cam_map(a, torch.tensor([[[[2.0, 0.0]]]]))  # w = 1/4 * 2 = 0.5
        tensor([[[[0.5000, 1.5000]]]])
    """
    a, g = _cast(activation, gradient)
    dims = _spatial(a)
    weights = _divide((a * g).sum(dim=dims, keepdim=True), a.sum(dim=dims, keepdim=True))
    return _weighted_sum(weights, a)


def layer_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""The signed LayerCAM map $\sum_k \mathrm{ReLU}(g_k) \odot A_k$ (Jiang et al., IEEE
    TIP 2021): each position weighted by its own positive gradient.

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.
        gradient: the score's gradient with respect to it, same shape.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution.

    Examples:
        >>> import torch
        >>> from normgrad.functional import layer_cam_map
        >>> g = torch.tensor([[[[1.0, -1.0]], [[2.0, 3.0]]]])
        >>> layer_cam_map(torch.ones(1, 2, 1, 2), g)
        tensor([[[[3., 3.]]]])
    """
    a, g = _cast(activation, gradient)
    return _weighted_sum(g.clamp_min(0), a)


def hires_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""The signed HiResCAM map $\sum_k g_k \odot A_k$ (Draelos and Carin, 2020): Grad-CAM
    without the spatial mean of the gradient.

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.
        gradient: the score's gradient with respect to it, same shape.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution.

    Examples:
        >>> import torch
        >>> from normgrad.functional import hires_cam_map
        >>> g = torch.tensor([[[[1.0, -1.0]], [[2.0, 3.0]]]])
        >>> hires_cam_map(torch.ones(1, 2, 1, 2), g)
        tensor([[[[3., 2.]]]])
    """
    a, g = _cast(activation, gradient)
    return _weighted_sum(g, a)


def eigen_cam_map(activation: torch.Tensor) -> torch.Tensor:
    r"""The signed Eigen-CAM map: each position's projection on the activations' first
    principal component (Muhammad and Yeasin, IJCNN 2020).

    With $X$ the ``(positions, C)`` matrix of one sample's activations, centred per
    channel ($X_{u,k} = A_{k,u} - \mathrm{mean}_v A_{k,v}$, as pytorch-grad-cam does),
    and $v_1$ the first right singular vector of $X$, the map is $m(u) = (X v_1)_u$.

    **Sign.** A singular vector is defined up to its sign, which LAPACK, cuSOLVER and
    numpy choose differently. normgrad takes the sign for which $\sum_k v_{1,k} \ge 0$:
    the component along which the channels grow together, so that for non-negative
    activations (after a ReLU) the map is high where the activations are. pytorch-grad-cam
    keeps whatever sign numpy returns: its map equals this one or its negation.

    No gradient is read: the map does not depend on the target.

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution; all zero for a
        single position or channels constant over the positions.

    Examples:
        >>> import torch
        >>> from normgrad.functional import eigen_cam_map
        >>> a = torch.tensor([[[[0.0, 1.0, 2.0]], [[0.0, 2.0, 4.0]]]])
        >>> eigen_cam_map(a)  # rows (-1, -2), (0, 0), (1, 2) on (1, 2) / sqrt(5)
        tensor([[[[-2.2361,  0.0000,  2.2361]]]])
    """
    _check_maps_input("activation", activation)
    a = activation.to(_compute_dtype(activation.dtype))
    rows = a.flatten(2).transpose(1, 2)  # (N, positions, C)
    centred = rows - rows.mean(dim=1, keepdim=True)
    vh: torch.Tensor = torch.linalg.svd(centred, full_matrices=False).Vh
    first = vh[:, 0, :]  # (N, C)
    sign = torch.where(first.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(a.dtype)
    projection = centred @ (first * sign).unsqueeze(-1)  # (N, positions, 1)
    return projection.transpose(1, 2).reshape(a.shape[0], 1, *a.shape[2:])


def score_cam_masks(activation: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    r"""Score-CAM's masks: each channel upsampled to the input and min-max normalised.

    $H_k = \mathrm{norm}(\mathrm{up}(A_k))$, with ``up`` (bi/tri)linear,
    ``align_corners=False`` (as every normgrad map; pytorch-grad-cam's ScoreCAM uses
    ``align_corners=True``), and ``norm`` per sample and channel to ``[0, 1]``
    ([`min_max_normalize`][normgrad.functional.min_max_normalize]). A channel constant at
    the layer's resolution (up to rounding,
    [`is_constant`][normgrad.functional.is_constant]) gives an all-zero mask: its
    upsampled copy differs from a constant by rounding only.

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.
        size: the input's spatial size.

    Returns:
        Tensor ``(N, C, *size)`` with values in ``[0, 1]``.

    Examples:
        >>> import torch
        >>> from normgrad.functional import score_cam_masks
        >>> score_cam_masks(torch.tensor([[[[1.0, 3.0]]]]), (1, 4))
        tensor([[[[0.0000, 0.2500, 0.7500, 1.0000]]]])
    """
    _check_maps_input("activation", activation)
    a = activation.to(_compute_dtype(activation.dtype))
    n, c = a.shape[:2]
    channels = a.reshape(n * c, 1, *a.shape[2:])
    flat = min_max_normalize(upsample(channels, size))
    # a constant channel upsamples to rounding noise, which the normalisation would inflate
    constant = is_constant(channels).view(-1, *([1] * (flat.ndim - 1)))
    return torch.where(constant, 0, flat).reshape(n, c, *flat.shape[2:])


def score_cam_map(activation: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    r"""The signed Score-CAM map $\sum_k w_k A_k$ (Wang et al., CVPR Workshops 2020).

    $w = \mathrm{softmax}_k(s_k)$, with $s_k$ the target's score (logit) of the input
    masked by channel ``k`` ([`score_cam_masks`][normgrad.functional.score_cam_masks]),
    $x \odot H_k$. The paper's increase of confidence over a reference input,
    $s_k - s_{\mathrm{ref}}$, gives the same weights: the softmax ignores a shift.

    Args:
        activation: the layer's output $A$, tensor ``(N, C, *spatial)``.
        scores: the masked inputs' scores, tensor ``(N, C)``.

    Returns:
        Tensor ``(N, 1, *spatial)``, signed, at the layer's resolution.

    Examples:
        >>> import torch
        >>> from normgrad.functional import score_cam_map
        >>> a = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
        >>> score_cam_map(a, torch.tensor([[0.0, 0.0]]))
        tensor([[[[0.5000, 0.5000]]]])
    """
    _check_maps_input("activation", activation)
    a = activation.to(_compute_dtype(activation.dtype))
    if not isinstance(scores, torch.Tensor) or scores.shape != a.shape[:2]:
        raise ShapeError(
            f"scores: expected one score per sample and channel, shape {tuple(a.shape[:2])}, "
            f"got {getattr(scores, 'shape', type(scores).__name__)}; pass the target's "
            "score of each masked input",
            getattr(scores, "shape", None),
        )
    weights = torch.softmax(scores.to(a.dtype), dim=1)
    return _weighted_sum(weights.reshape(*weights.shape, *([1] * (a.ndim - 2))), a)
