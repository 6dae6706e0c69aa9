"""Literal class activation maps, from the papers' equations (tests only, float64).

Every map is written channel by channel and position by position; each returns the
signed map ``(N, 1, *spatial)`` before the ReLU, except where said.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as tf


def _positions(spatial: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(s) for s in spatial)))


def _empty(a: torch.Tensor) -> torch.Tensor:
    return torch.zeros(a.shape[0], 1, *a.shape[2:], dtype=torch.float64)


def reference_grad_cam_plus_plus(
    activation: torch.Tensor, first: torch.Tensor, second: torch.Tensor, third: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM++'s general weights (Chattopadhyay et al. 2018, Eq. 10), from the first,
    second and third derivatives of the explained output Y with respect to each A_k(i,j):

    alpha_k(i,j) = d2 / (2 d2 + sum_ab A_k(a,b) d3)   (0 where the denominator is 0)
    w_k = sum_ij alpha_k(i,j) relu(d1),   map = sum_k w_k A_k."""
    a, d1, d2, d3 = (t.double() for t in (activation, first, second, third))
    n, c, *spatial = a.shape
    out = _empty(a)
    for b in range(n):
        for k in range(c):
            total = sum(a[(b, k, *u)] for u in _positions(tuple(spatial)))
            weight = 0.0
            for u in _positions(tuple(spatial)):
                at = (b, k, *u)
                denominator = 2 * d2[at] + total * d3[at]
                alpha = d2[at] / denominator if denominator != 0 else 0.0
                weight = weight + alpha * max(float(d1[at]), 0.0)
            out[b, 0] += weight * a[b, k]
    return out


def reference_xgrad_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020, Eq. 9): w_k = sum_u (A_k(u) / sum_v A_k(v)) g_k(u)
    (0 when the channel sums to 0), map = sum_k w_k A_k."""
    a, g = activation.double(), gradient.double()
    n, c, *spatial = a.shape
    out = _empty(a)
    for b in range(n):
        for k in range(c):
            total = sum(float(a[(b, k, *u)]) for u in _positions(tuple(spatial)))
            weight = 0.0
            if total != 0:
                for u in _positions(tuple(spatial)):
                    weight += float(a[(b, k, *u)]) / total * float(g[(b, k, *u)])
            out[b, 0] += weight * a[b, k]
    return out


def reference_layer_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021, Eqs. 5-6): sum_k relu(g_k(u)) A_k(u), per position."""
    a, g = activation.double(), gradient.double()
    n, c, *spatial = a.shape
    out = _empty(a)
    for b, k, u in itertools.product(range(n), range(c), _positions(tuple(spatial))):
        out[(b, 0, *u)] += max(float(g[(b, k, *u)]), 0.0) * a[(b, k, *u)]
    return out


def reference_hires_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos and Carin 2020): sum_k g_k(u) A_k(u), per position."""
    a, g = activation.double(), gradient.double()
    n, c, *spatial = a.shape
    out = _empty(a)
    for b, k, u in itertools.product(range(n), range(c), _positions(tuple(spatial))):
        out[(b, 0, *u)] += g[(b, k, *u)] * a[(b, k, *u)]
    return out


def reference_principal_component(activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigenvalues (ascending) and the first principal component of one sample's
    activations ``(C, *spatial)``: the covariance sum_u (x_u - mean)(x_u - mean)^T built
    position by position, its eigenvector of the largest eigenvalue, signed so that its
    entries sum to >= 0."""
    a = activation.double()
    c, *spatial = a.shape
    rows = [a[(slice(None), *u)] for u in _positions(tuple(spatial))]
    mean = sum(rows) / len(rows)
    covariance = torch.zeros(c, c, dtype=torch.float64)
    for row in rows:
        covariance += torch.outer(row - mean, row - mean)
    values, vectors = torch.linalg.eigh(covariance)
    first = vectors[:, -1]
    return values, first if float(first.sum()) >= 0 else -first


def reference_eigen_cam(activation: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (Muhammad and Yeasin 2020): each position's centred activation vector
    projected on the first principal component (signed as above)."""
    a = activation.double()
    n, _, *spatial = a.shape
    out = _empty(a)
    for b in range(n):
        _, first = reference_principal_component(a[b])
        positions = _positions(tuple(spatial))
        mean = sum(a[(b, slice(None), *u)] for u in positions) / len(positions)
        for u in positions:
            out[(b, 0, *u)] = torch.dot(a[(b, slice(None), *u)] - mean, first)
    return out


def reference_mask(channel: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """One Score-CAM mask: a channel ``(*spatial)`` upsampled ((bi/tri)linear,
    align_corners=False) to ``size``, then (m - min) / (max - min); zeros for a channel
    constant at its own resolution (a spread within 64 float64 epsilons of its largest
    magnitude)."""
    peak = float(channel.abs().max())
    if float(channel.max() - channel.min()) <= 64 * torch.finfo(torch.float64).eps * peak:
        return torch.zeros(size, dtype=torch.float64)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    up = tf.interpolate(channel.double()[None, None], size=size, mode=mode, align_corners=False)
    up = up[0, 0]
    low, high = float(up.min()), float(up.max())
    return (up - low) / (high - low) if high > low else torch.zeros_like(up)


def reference_score_cam(
    activation: torch.Tensor, x: torch.Tensor, score: Callable[[torch.Tensor, int], float]
) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020, Algorithm 1), sample by sample and channel by channel:
    s_k = score(x * H_k) for the masked sample, w = softmax(s), ReLU(sum_k w_k A_k).
    ``score(masked, b)`` scores the masked copy of sample ``b`` ``(1, C_in, *size)``."""
    a = activation.double()
    n, c, *_ = a.shape
    size = tuple(x.shape[2:])
    out = _empty(a)
    for b in range(n):
        scores = [score(x[b : b + 1] * reference_mask(a[b, k], size), b) for k in range(c)]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        for k in range(c):
            out[b, 0] += exps[k] / sum(exps) * a[b, k]
    return out.clamp_min(0)
