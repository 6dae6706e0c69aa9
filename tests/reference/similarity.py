"""Literal references of the map similarities: ranks, Spearman, Gaussian-window SSIM.

Each works on one map (float64, any number of axes), pixel by pixel and window by window.
"""

from __future__ import annotations

import itertools
import math

import torch

from .localization import pixels


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span."""
    out = [0.0] * len(values)
    for i, v in enumerate(values):
        below = sum(1 for w in values if w < v)
        equal = sum(1 for w in values if w == v)
        out[i] = below + (equal + 1) / 2
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's correlation of the ranks; NaN for a constant map."""
    ra = ranks([float(a[p]) for p in pixels(tuple(a.shape))])
    rb = ranks([float(b[p]) for p in pixels(tuple(b.shape))])
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va and vb else float("nan")


def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5) -> float:
    """Mean SSIM over the pixels at least ``r`` from every border, each from its
    Gaussian window (radius r = int(3.5 sigma + 0.5), weights exp(-d^2 / 2 sigma^2) per
    axis, normalised; indices mirrored with the edge repeated), population moments,
    C1 = 0.01^2, C2 = 0.03^2."""
    r = int(3.5 * sigma + 0.5)
    taps = [math.exp(-0.5 * (d / sigma) ** 2) for d in range(-r, r + 1)]
    taps = [t / sum(taps) for t in taps]

    def mirror(i: int, n: int) -> int:
        return -i - 1 if i < 0 else 2 * n - 1 - i if i >= n else i

    inner = [range(r, n - r) for n in a.shape]
    scores = []
    for p in itertools.product(*inner):
        mx = my = xx = yy = xy = 0.0
        for offset in itertools.product(range(-r, r + 1), repeat=a.ndim):
            w = math.prod(taps[o + r] for o in offset)
            q = tuple(mirror(i + o, n) for i, o, n in zip(p, offset, a.shape))
            x, y = float(a[q]), float(b[q])
            mx, my = mx + w * x, my + w * y
            xx, yy, xy = xx + w * x * x, yy + w * y * y, xy + w * x * y
        vx, vy, cxy = xx - mx * mx, yy - my * my, xy - mx * my
        c1, c2 = 0.01**2, 0.03**2
        scores.append(
            (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        )
    return sum(scores) / len(scores)
