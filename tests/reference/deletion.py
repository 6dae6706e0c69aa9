"""Literal references of deletion and insertion: the values that replace removed pixels,
and the curves of one image, its pixels ranked by hand and changed one by one, the model
called once per point of the curve.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from torch import nn


def reference_baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Each channel alone: zeros, its mean, or scipy's Gaussian (11 taps, sigma 5, mirror)."""
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            channel = x[i, c].double().numpy()
            if kind == "mean":
                out[i, c] = float(channel.mean())
            elif kind == "blur":
                blurred = ndimage.gaussian_filter(channel, sigma=5.0, mode="mirror", truncate=1.0)
                out[i, c] = torch.from_numpy(np.ascontiguousarray(blurred)).float()
    return out


def reference_curves(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    counts: list[int],
    base: torch.Tensor,
    target: int | None,
) -> tuple[list[float], list[float], float, float, int]:
    """One image: rank pixels by hand, change them one by one, call the model per point."""
    height, width = saliency.shape
    pixels = [(r, c) for r in range(height) for c in range(width)]
    ranking = sorted(pixels, key=lambda p: (-float(saliency[p]), p))  # ties: row-major

    def prob(image: torch.Tensor, cls: int | None) -> tuple[float, int]:
        with torch.no_grad():
            logits = model(image[None])[0].double()
        if logits.numel() == 1:
            logits = torch.cat([torch.zeros(1, dtype=torch.float64), logits])
        p = [math.exp(v) for v in logits.tolist()]
        chosen = cls if cls is not None else int(torch.argmax(logits))
        return p[chosen] / sum(p), chosen

    _, cls = prob(x, target)
    deletion, insertion = [], []
    for count in counts:
        removed, revealed = x.clone(), base.clone()
        for r, c in ranking[:count]:
            removed[:, r, c] = base[:, r, c]
            revealed[:, r, c] = x[:, r, c]
        deletion.append(prob(removed, cls)[0])
        insertion.append(prob(revealed, cls)[0])
    total = height * width
    fractions = [n / total for n in counts]
    area = [0.0, 0.0]
    for j in range(len(counts) - 1):
        width_j = fractions[j + 1] - fractions[j]
        area[0] += width_j * (deletion[j] + deletion[j + 1]) / 2
        area[1] += width_j * (insertion[j] + insertion[j + 1]) / 2
    return deletion, insertion, area[0], area[1], cls
