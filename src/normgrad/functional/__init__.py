r"""The functional core of normgrad: pure tensor maths, no models, no hooks.

Given a layer's activation $x$ and the gradient $g = \partial s / \partial x$
of a score $s$, both of shape ``(N, C, *spatial)``, NormGrad measures at every
spatial position $u$ the Frobenius norm of the gradient that a *virtual identity
layer* (VIL) inserted after the layer would receive:

| VIL | map $m(u)$ |
| --- | --- |
| ``scaling`` | $\lVert g_u \odot x_u \rVert_2$ |
| ``conv1x1`` | $\lVert g_u \rVert_2 \, \lVert x_u \rVert_2$ |
| ``convKxK`` | $\lVert g_u \rVert_2 \, \lVert \mathrm{unfold}_K(x)_u \rVert_2$ |

Norms are L2 over channels (not squared). The patch norm of ``convKxK`` (``K`` odd, zero
padding ``K // 2``, stride 1) is computed as the square root of a ``K``-wide box sum of
the channel-summed squares, $\sqrt{\mathrm{box}_K(\sum_c x_c^2)}$, an exact
identity that needs ``O(H W)`` memory instead of the ``O(K^2 C H W)`` of ``unfold``.

The package holds the maths only (no models, no hooks): VIL names (``_vil``), raw maps
(``_maps``), the other class activation maps (``_cams``), from raw maps to saliency
(``_saliency``) and quadrature rules (``_quadrature``); everything is imported from
``normgrad.functional``.

Every function accepts 1, 2 or 3 spatial dimensions (``(N, C, L)``, ``(N, C, H, W)``,
``(N, C, D, H, W)``), runs on the device of its input and accepts float16, bfloat16,
float32 and float64. Half-precision inputs are computed and returned in float32, since
squared activations overflow float16; other inputs keep their dtype.

Examples:
    >>> import torch
    >>> from normgrad import functional as nf
    >>> x, g = torch.randn(2, 8, 7, 7), torch.randn(2, 8, 7, 7)
    >>> nf.normgrad_map(x, g, "conv3x3").shape
    torch.Size([2, 1, 7, 7])
    >>> torch.allclose(nf.normgrad_map(x, g, "conv1x1"),
    ...                g.norm(dim=1, keepdim=True) * x.norm(dim=1, keepdim=True))
    True
"""

from __future__ import annotations

from ._attention import (
    HEAD_FUSIONS,
    attention_relevance,
    attention_rollout,
    class_token_map,
    discard_lowest,
    fuse_heads,
)
from ._cams import (
    eigen_cam_map,
    grad_cam_plus_plus_map,
    hires_cam_map,
    layer_cam_map,
    score_cam_map,
    score_cam_masks,
    xgrad_cam_map,
)
from ._maps import (
    box_sum,
    conv_map,
    grad_cam_map,
    normgrad_map,
    patch_norm,
    reduce_channels,
    scaling_map,
)
from ._quadrature import QUADRATURE_METHODS, quadrature
from ._saliency import (
    fuse_geometric_mean,
    is_constant,
    layer_maps_to_saliency,
    min_max_normalize,
    scale_to_unit,
    upsample,
)
from ._vil import VIL, parse_vil

__all__ = [
    "HEAD_FUSIONS",
    "QUADRATURE_METHODS",
    "VIL",
    "attention_relevance",
    "attention_rollout",
    "box_sum",
    "class_token_map",
    "conv_map",
    "discard_lowest",
    "eigen_cam_map",
    "fuse_geometric_mean",
    "fuse_heads",
    "grad_cam_map",
    "grad_cam_plus_plus_map",
    "hires_cam_map",
    "is_constant",
    "layer_cam_map",
    "layer_maps_to_saliency",
    "min_max_normalize",
    "normgrad_map",
    "parse_vil",
    "patch_norm",
    "quadrature",
    "reduce_channels",
    "scale_to_unit",
    "scaling_map",
    "score_cam_map",
    "score_cam_masks",
    "upsample",
    "xgrad_cam_map",
]
