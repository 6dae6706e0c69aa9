r"""The results of the model parameter randomisation test (MPRT, Adebayo et al., 2018) and
the pieces of its variants (Hedström et al., 2023): maps averaged over noisy copies of
the input (sMPRT) and the complexity of a map (eMPRT).

Public through [`normgrad.sanity`][normgrad.sanity].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._checks import check_count, check_number, check_positive_int
from ._errors import InvalidArgumentError
from ._explainers.perturbation import _mix, noise_seeds
from ._transfer import to_device

Explain = Callable[[torch.Tensor], torch.Tensor]
"""Maps ``(N, 1, *spatial)`` of a batch, for one model and a fixed target."""


def noise_averaged(
    explain: Explain, x: torch.Tensor, samples: int, noise: float, seed: int
) -> torch.Tensor:
    r"""The mean of ``samples`` maps of ``x`` plus Gaussian noise, the last one without:
    $\frac{1}{S} \big(\sum_{s < S - 1} e(x + \varepsilon_s) + e(x)\big)$,
    $\varepsilon_s \sim \mathcal{N}(0, \sigma^2)$ drawn in float64 on the CPU (the same
    noise for every model compared), as Quantus' sMPRT denoises explanations (its last
    sample is the input itself). **The noise of an image depends on that image alone**,
    as SmoothGrad's: copy ``s`` of sample ``i`` draws from a generator seeded by
    ``_mix(noise_seeds(seed, x)[i], s)``, so a sample's map is the same in any batch."""
    samples = check_positive_int(samples, "samples")
    noise = check_number(noise, "noise", low=0)
    seed = check_count(seed, "seed")
    seeds = noise_seeds(seed, x) if samples > 1 else []
    generator = torch.Generator()
    total = explain(x).detach().to(torch.float64)
    for copy in range(samples - 1):
        eps = [
            torch.randn(
                x.shape[1:], generator=generator.manual_seed(_mix(image, copy)), dtype=torch.float64
            )
            for image in seeds
        ]
        noisy = x + to_device(torch.stack(eps) * noise, x.device, x.dtype)
        total = total + explain(noisy).detach().to(torch.float64)
    return total / samples


def discrete_entropy(maps: torch.Tensor, bins: int = 100) -> torch.Tensor:
    r"""The entropy of each map's histogram, $-\sum_b p_b \ln p_b$ (natural log), over
    ``bins`` equal bins from the map's minimum to its maximum (the last bin closed;
    ``numpy.histogram(m, bins)``), of the absolute values; 0 for a constant map. Quantus'
    ``discrete_entropy``, the complexity eMPRT reads.

    Args:
        maps: ``(N, ...)``, finite.
        bins: number of bins (a positive int).

    Returns:
        float64 tensor ``(N,)``.
    """
    bins = check_positive_int(bins, "bins")
    flat = maps.detach().flatten(1).abs().to(torch.float64)
    n = flat.shape[0]
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    scaled = (flat - low) / torch.where(span > 0, span, 1.0) * bins
    index = scaled.floor().long().clamp(0, bins - 1)  # the maximum joins the last bin
    counts = torch.zeros(n, bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, index, torch.ones_like(flat))
    p = counts / flat.shape[1]
    terms = torch.where(p > 0, -p * torch.log(torch.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(dim=1)


def check_bins(bins: object) -> int:
    """The number of bins of eMPRT's histograms, refused below 2 naming ``bins``: one bin
    holds every value, so every map's complexity would be 0 and the ratio NaN."""
    bins = check_positive_int(bins, "bins")
    if bins < 2:
        raise InvalidArgumentError(
            f"bins: expected an int >= 2 (one bin gives every map complexity 0), got {bins};"
            " pass bins=2 or more (Quantus uses 100)"
        )
    return bins


@dataclass(frozen=True)
class ComplexityResult:
    """eMPRT: the complexity of the maps as blocks are randomised, top first.

    Attributes:
        blocks: the blocks randomised, in order.
        complexity: the discrete entropy of each sample's map ``(steps + 1, N)``, the
            trained model's first.
        ratio: the fully randomised model's complexity over the trained model's
            ``(N,)``: above 1 when randomising the weights makes the maps more complex
            (the method depends on them); infinite (NaN when both are constant) for a
            constant trained map.
    """

    blocks: list[str]
    complexity: torch.Tensor
    ratio: torch.Tensor


@dataclass(frozen=True)
class CascadeResult:
    """Similarity of maps to the trained model's as blocks are randomised, top first.

    Attributes:
        blocks: the blocks randomised, in order: step ``i`` has randomised
            ``blocks[: i + 1]``.
        similarity: the similarity with the trained model's maps by ``measure``,
            ``(steps, N)`` (float64).
        saliency: the maps, ``(steps + 1, N, 1, *spatial)`` (trained first), when kept;
            else ``None``.
        measure: the measure of [`map_similarity`][normgrad.metrics.map_similarity].
    """

    blocks: list[str]
    similarity: torch.Tensor
    saliency: torch.Tensor | None
    measure: str = "spearman"

    @property
    def spearman(self) -> torch.Tensor:
        """``similarity``, by the name it had when Spearman was the only measure."""
        return self.similarity

    def mean(self) -> list[float]:
        """Mean similarity over samples at each step (NaN for constant maps ignored)."""
        return [float(torch.nanmean(row)) for row in self.similarity]
