r"""Structural similarity (SSIM) of maps with a Gaussian window (Wang et al., 2004)."""

from __future__ import annotations

import math

import torch

from .._errors import ShapeError
from ._filters import filter_axes, symmetric

#: The constants of Wang et al. (2004): $C_1 = (K_1 L)^2$, $C_2 = (K_2 L)^2$, $L = 1$.
K1, K2 = 0.01, 0.03
#: The Gaussian window: standard deviation, and its radius in standard deviations
#: (``int(3.5 * 1.5 + 0.5) = 5``: an 11-pixel window, scikit-image's).
SIGMA, TRUNCATE = 1.5, 3.5


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Mean SSIM of paired maps ``(N, *spatial)`` in $[0, 1]$ (float64), per sample.

    $$
    S = \frac{(2 \mu_a \mu_b + C_1)(2 \sigma_{ab} + C_2)}
             {(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)}
    $$

    with local means, variances and covariance weighted by a Gaussian window
    ($\sigma = 1.5$, 11 pixels along each axis, borders mirrored), population
    (not sample) covariances, $C_1 = (0.01)^2$, $C_2 = (0.03)^2$ (data range 1), and the
    mean taken over the pixels at least 5 from every border, as scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``. Every side needs 11 pixels or more."""
    radius = int(TRUNCATE * SIGMA + 0.5)
    width = 2 * radius + 1
    weights = [math.exp(-0.5 * (d / SIGMA) ** 2) for d in range(-radius, radius + 1)]
    taps = [w / math.fsum(weights) for w in weights]
    if any(side < width for side in a.shape[1:]):
        raise ShapeError(
            f"saliency: expected maps of at least {width} pixels along every axis for "
            f"SSIM's {width}-pixel Gaussian window, got shape {tuple(a.shape)}; upsample "
            "the maps to the image's size first",
            a.shape,
        )
    x, y = a.to(torch.float64), b.to(torch.float64)
    stats = filter_axes(torch.stack([x, y, x * x, y * y, x * y], dim=1), taps, symmetric)
    mu_x, mu_y, xx, yy, xy = stats.unbind(dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = K1**2, K2**2
    s = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    s = s / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    pad = width // 2
    inner = s[(slice(None), *[slice(pad, side - pad) for side in s.shape[1:]])]
    return inner.flatten(1).sum(dim=1) / math.prod(inner.shape[1:])
