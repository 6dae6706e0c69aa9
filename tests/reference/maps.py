"""Literal, slow reference implementations of the paper's definitions (tests only).

Nothing here is clever: NormGrad is computed per location as the Frobenius norm of the
weight gradient a virtual identity layer would receive there, i.e. an explicit outer
product of the gradient with the (unfolded) activation.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as tf


def _positions(spatial: tuple[int, ...]) -> itertools.product[tuple[int, ...]]:
    return itertools.product(*(range(s) for s in spatial))


def reference_normgrad_map(
    activation: torch.Tensor, gradient: torch.Tensor, kind: str, kernel_size: int = 1
) -> torch.Tensor:
    """Per-location Frobenius norm of the VIL's weight gradient, in float64.

    scaling: the VIL is a per-channel scaling, its gradient at u is g_u ⊙ x_u.
    conv K×K: the VIL is a K×K convolution, its weight gradient at u is the outer product
    of g_u (C) with the zero-padded K×K patch of x around u (C·K^d).
    """
    x = activation.double()
    g = gradient.double()
    n, _, *spatial = x.shape
    pad = kernel_size // 2
    padded = tf.pad(x, [pad, pad] * len(spatial))
    out = torch.zeros(n, 1, *spatial, dtype=torch.float64)
    for b in range(n):
        for pos in _positions(tuple(spatial)):
            g_u = g[(b, slice(None), *pos)]
            if kind == "scaling":
                weight_grad = g_u * x[(b, slice(None), *pos)]
            else:
                window = tuple(slice(p, p + kernel_size) for p in pos)
                patch = padded[(b, slice(None), *window)].reshape(-1)
                weight_grad = torch.outer(g_u, patch)
            out[(b, 0, *pos)] = torch.sqrt((weight_grad**2).sum())
    return out


def reference_unit(m: torch.Tensor) -> torch.Tensor:
    """One sample divided by its largest magnitude (unchanged when all zero)."""
    scale = m.abs().max()
    return m / scale if scale > 0 else m


def reference_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-sample (m - min) / (max - min) of the sample divided by its largest magnitude,
    zeros for a sample of equal values, written out sample by sample."""
    out = torch.zeros_like(maps)
    for b in range(maps.shape[0]):
        m = reference_unit(maps[b])
        low, high = m.min(), m.max()
        if high > low:
            out[b] = (m - low) / (high - low)
    return out


def reference_geometric_mean(maps: list[torch.Tensor]) -> torch.Tensor:
    """prod_j m_j ** (1/J), in float64."""
    product = torch.ones_like(maps[0], dtype=torch.float64)
    for m in maps:
        product = product * m.double()
    return product ** (1.0 / len(maps))


def reference_saliency(
    raw_maps: list[torch.Tensor], size: tuple[int, ...], constant_rtol: float = 1e-5
) -> torch.Tensor:
    """Upsample (bilinear, align_corners=False), normalise, take the geometric mean.

    Written sample by sample: a layer map whose spread is within ``constant_rtol`` of its
    magnitude is constant for that sample and left out of its mean; a sample whose every
    map is constant gets zeros.
    """
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    batch = raw_maps[0].shape[0]
    out = torch.zeros(batch, 1, *size, dtype=torch.float64)
    for b in range(batch):
        kept = []
        for raw in raw_maps:
            m = raw[b : b + 1].double()
            if (m.max() - m.min()) <= constant_rtol * m.abs().max():
                continue
            up = tf.interpolate(reference_unit(m), size=size, mode=mode, align_corners=False)
            kept.append(reference_normalize(up))
        if kept:
            out[b : b + 1] = reference_geometric_mean(kept)
    return out


def reference_grad_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k alpha_k A_k), alpha_k = mean_u g_k(u), written channel by channel, float64."""
    a = activation.double()
    g = gradient.double()
    n, c, *spatial = a.shape
    out = torch.zeros(n, 1, *spatial, dtype=torch.float64)
    for b in range(n):
        for k in range(c):
            alpha = g[b, k].sum() / g[b, k].numel()
            out[b, 0] += alpha * a[b, k]
    return out.clamp_min(0)
