"""Statistics of scores: binomial intervals and the Difference of Means across runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from .._checks import check_confidence, check_count
from .._errors import InvalidArgumentError
from ._bootstrap import resample_rows


def wilson_interval(hits: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``hits / total`` (NaN when empty)."""
    from scipy.stats import norm

    check_confidence(confidence)
    hits, total = check_count(hits, "hits"), check_count(total, "total")
    if hits > total:
        raise InvalidArgumentError(f"hits: expected at most total={total}, got {hits}")
    if total == 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = hits / total
    denom = 1 + z**2 / total
    center = (p + z**2 / (2 * total)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
    return max(0.0, center - half), min(1.0, center + half)


@dataclass(frozen=True)
class DoMResult:
    """Difference of Means between two sets of repeated scores, with spread and significance.

    Attributes:
        dom: the Difference of Means, ``|mean_a - mean_b|``.
        mean_a: the mean of the scores of A.
        mean_b: the mean of the scores of B.
        std_a: the sample standard deviation (ddof=1) of the scores of A; NaN for a
            single run.
        std_b: the same for B.
        p_value: the two-sided permutation p-value of the DoM (exact when the splits
            are few); NaN when no test was run.
        low: the lower end of the bootstrap percentile interval of the DoM, at the
            ``confidence`` asked for; NaN when no interval was drawn.
        high: its upper end; NaN when no interval was drawn.
    """

    dom: float
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float
    p_value: float
    low: float
    high: float


def dom(
    scores_a: Sequence[float] | torch.Tensor | np.ndarray,
    scores_b: Sequence[float] | torch.Tensor | np.ndarray,
    *,
    permutations: int | None = 10_000,
    bootstrap: int | None = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> DoMResult:
    r"""Difference of Means, $|\bar a - \bar b|$, of scores over repeated runs.

    The paper's consistency measure across architectures (MMD with a linear kernel in one
    dimension): ``scores_a`` are e.g. the Pointing Game accuracies of R independently
    trained ResNets, ``scores_b`` those of R EfficientNets.

    Beyond the paper, a permutation test of "both sets come from one distribution" (all
    splits enumerated when there are at most ``permutations`` of them, else random ones)
    and a bootstrap interval of the DoM (runs resampled within each set).

    Args:
        scores_a: the scores of the runs of A (at least one, finite).
        scores_b: the scores of the runs of B.
        permutations: how many random splits at most (an int >= 0); 0 or None: no test.
        bootstrap: how many bootstrap draws (an int >= 0); 0 or None: no interval.
        confidence: level of the bootstrap interval, in (0, 1).
        seed: seed of the random draws (an int >= 0).

    Examples:
        >>> from normgrad.metrics import dom
        >>> r = dom([0.85, 0.86, 0.84], [0.80, 0.79, 0.81])
        >>> round(r.dom, 3), r.p_value
        (0.05, 0.1)
    """
    permutations = None if permutations is None else check_count(permutations, "permutations")
    bootstrap = None if bootstrap is None else check_count(bootstrap, "bootstrap")
    confidence = check_confidence(confidence)
    seed = check_count(seed, "seed")
    a, b = _scores(scores_a), _scores(scores_b)
    for name, values in (("scores_a", a), ("scores_b", b)):
        if values.size == 0 or not np.isfinite(values).all():
            raise InvalidArgumentError(
                f"{name}: expected at least one finite score, got {values.tolist()}"
            )
    observed = abs(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    p_value = float("nan")
    if permutations:
        pooled = np.concatenate([a, b])
        n, k = pooled.size, a.size
        tol = 1e-12
        if math.comb(n, k) <= permutations:
            stats = []
            for chosen in combinations(range(n), k):
                mask = np.zeros(n, dtype=bool)
                mask[list(chosen)] = True
                stats.append(abs(pooled[mask].mean() - pooled[~mask].mean()))
            p_value = float(np.mean(np.asarray(stats) >= observed - tol))
        else:
            idx = np.argsort(rng.random((permutations, n)), axis=1)
            perm = pooled[idx]
            stats = np.abs(perm[:, :k].mean(axis=1) - perm[:, k:].mean(axis=1))
            p_value = float((1 + np.sum(stats >= observed - tol)) / (permutations + 1))
    low = high = float("nan")
    if bootstrap:  # each set resampled on its own, by the one resampler of the metrics
        cpu = torch.device("cpu")
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ra = ta[resample_rows(a.size, bootstrap, seed, cpu)].mean(dim=1)
        rb = tb[resample_rows(b.size, bootstrap, seed + 1, cpu)].mean(dim=1)
        alpha = (1 - confidence) / 2
        q = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
        low, high = (float(v) for v in torch.quantile((ra - rb).abs(), q))
    return DoMResult(
        float(observed), float(a.mean()), float(b.mean()), _std(a), _std(b), p_value, low, high
    )


def _scores(values: Sequence[float] | torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy().ravel()
    return np.asarray(values, dtype=np.float64).ravel()


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")
