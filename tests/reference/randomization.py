"""Literal references of the randomisation test's variants (Hedström et al., 2023): the
noise-averaged maps of sMPRT and the histogram entropy of eMPRT, sample by sample."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from normgrad import sanity
from normgrad._explainers.perturbation import _mix, noise_seeds


def states(model: nn.Module, blocks: Sequence[str], seed: int) -> list[nn.Module]:
    """The trained model, then a copy with one more block re-initialised at each step
    (top first), the weights drawn from one generator in that order."""
    out = [model]
    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    for name in blocks:
        sanity.reinitialize(clone.get_submodule(name), generator)
        out.append(copy.deepcopy(clone))
    return out


def noise_averaged(
    explain_one: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    samples: int,
    noise: float,
    seed: int,
) -> list[torch.Tensor]:
    """Per sample i, explained alone: (map of x_i + the sum over s < S - 1 of the map of
    x_i + eps_s,i) / S, eps_s,i drawn from N(0, noise^2) in float64 on the CPU by a
    generator seeded with _mix(seed of x_i alone, s): the noise of x_i alone."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        (own,) = noise_seeds(seed, xi)  # the seed of this image, with no other image
        total = explain_one(xi, i).double()
        for s in range(samples - 1):
            generator = torch.Generator().manual_seed(_mix(own, s))
            eps = torch.randn(xi.shape[1:], generator=generator, dtype=torch.float64)
            total = total + explain_one(xi + (eps * noise).to(x.dtype)[None], i).double()
        out.append(total[0] / samples)
    return out


def discrete_entropy(m: torch.Tensor, bins: int) -> float:
    """Entropy (natural log) of the histogram of |m| over ``bins`` equal bins between its
    minimum and maximum, each value put in the bin whose edges hold it (the last closed)."""
    values = [abs(float(v)) for v in m.flatten()]
    low, high = min(values), max(values)
    if low == high:
        return 0.0
    edges = np.linspace(low, high, bins + 1)
    counts = [0] * bins
    for v in values:
        for b in range(bins):
            if edges[b] <= v < edges[b + 1] or (b == bins - 1 and v == edges[-1]):
                counts[b] += 1
                break
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c)
