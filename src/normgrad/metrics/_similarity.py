r"""How alike two sets of maps are: rank correlations and SSIM, with intervals.

The measures of the randomisation sanity checks (Adebayo et al., 2018) and of
repeatability and reproducibility studies of saliency (Arun et al., 2021: maps of two
trainings of one architecture, or of two architectures, on the same images).
"""

from __future__ import annotations

import torch

from .._checks import check_known
from .._deferred import deferred_checks
from .._errors import ShapeError
from .._transfer import to_device
from ._binarize import min_max
from ._bootstrap import Interval, bootstrap_mean
from ._correlation import rank_correlation
from ._maps import as_maps
from ._ssim import ssim

SIMILARITY_MEASURES = ("spearman", "spearman_abs", "ssim")
"""The measures [`map_similarity`][normgrad.metrics.map_similarity] knows."""


def check_measure(measure: object) -> str:
    """One of ``SIMILARITY_MEASURES``."""
    check_known([measure], SIMILARITY_MEASURES, "measure", "measure")
    return str(measure)


def map_similarity(
    maps_a: torch.Tensor, maps_b: torch.Tensor, measure: str = "spearman"
) -> torch.Tensor:
    r"""Similarity of paired maps, per sample, by one of three measures.

    - ``"spearman"``: Spearman's rank correlation of the pixels' values (ties get
      average ranks; [`rank_correlation`][normgrad.metrics.rank_correlation]), in
      $[-1, 1]$, NaN where a map is constant.
    - ``"spearman_abs"``: the same of their absolute values (a method whose sign flips
      with the weights still counts as unchanged), Adebayo et al.'s second measure.
    - ``"ssim"``: the mean structural similarity (Wang et al., 2004) of the maps, each
      min-max normalised to $[0, 1]$ first (a constant map becomes zero): Gaussian window
      of $\sigma = 1.5$ (11 pixels per axis), $K_1 = 0.01$, $K_2 = 0.03$, data range 1,
      population covariances, the mean over pixels at least 5 from every border
      (scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=1)``); 2-D and 3-D, every side at least 11.

    A histogram-of-gradients similarity (Adebayo et al.'s third) is left out: it
    measures edges of the map, which SSIM's structure term already reads.

    Args:
        maps_a: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, finite.
        maps_b: maps of the same shape.
        measure: ``"spearman"``, ``"spearman_abs"`` or ``"ssim"``.

    Returns:
        float64 tensor ``(N,)``: 1 for maps that agree fully.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import map_similarity
        >>> a = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> map_similarity(a, 2 * a + 1, "ssim").round(decimals=9).tolist()
        [1.0, 1.0]
        >>> map_similarity(a, -a, "spearman_abs").tolist()
        [1.0, 1.0]
    """
    with deferred_checks():  # the call's checks read once, together
        measure = check_measure(measure)
        a, b = as_maps(maps_a, "maps_a"), as_maps(maps_b, "maps_b")
        if a.shape != b.shape:
            raise ShapeError(
                f"maps_b: expected the shape of maps_a {tuple(a.shape)}, got {tuple(b.shape)}",
                b.shape,
            )
        if measure == "ssim":
            return ssim(min_max(a, "maps_a"), min_max(b, "maps_b"))
        if measure == "spearman_abs":
            a, b = a.abs(), b.abs()
        return to_device(rank_correlation(a, b), a.device)


def map_agreement(
    maps_a: torch.Tensor,
    maps_b: torch.Tensor,
    measure: str = "spearman",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean similarity of paired maps over images, with a bootstrap interval.

    Repeatability (maps of two trainings of one model on the same images) and
    reproducibility (maps of two architectures) read as the mean of
    [`map_similarity`][normgrad.metrics.map_similarity] over the images, NaN (a constant
    map's rank correlation) left out, and its percentile interval over images resampled
    with replacement ([`bootstrap_mean`][normgrad.metrics.bootstrap_mean]).

    Args:
        maps_a: maps ``(N, 1, *spatial)`` or ``(N, *spatial)`` of one training or model.
        maps_b: the maps of the other, of the same images in the same order.
        measure: as for [`map_similarity`][normgrad.metrics.map_similarity].
        resamples: bootstrap resamples (an int >= 0).
        confidence: the interval's level, in (0, 1).
        seed: seed of the resampling.

    Returns:
        [`Interval`][normgrad.metrics.Interval] of the mean similarity.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import map_agreement
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.rand(8, 1, 16, 16, generator=g)
        >>> b = a + 0.1 * torch.rand(8, 1, 16, 16, generator=g)
        >>> r = map_agreement(a, b, "spearman")
        >>> bool(r.low <= r.mean <= r.high), bool(r.mean > 0.9)
        (True, True)
    """
    values = map_similarity(maps_a, maps_b, measure)
    return bootstrap_mean(values, resamples, confidence, seed)
