r"""Bootstrap intervals: the one place every metric that reports an interval draws them.

The rows of a table of per-image values (NaN: not scored) are resampled with replacement
``resamples`` times, all resamples at once on the values' device; the statistic of each
resample is the mean of its values left after NaN, and the interval is the percentile
interval of those means. The row indices are drawn on the CPU from a seeded
``torch.Generator``, so a seed gives the same resamples on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_confidence, check_count
from .._errors import ArgumentTypeError, ShapeError, describe
from .._transfer import to_device

# Resampled values per chunk (the resamples are cut so no chunk holds more).
_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap percentile interval (float64 tensors, on the values'
    device; NaN where no value was scored).

    Attributes:
        mean: the mean of the values scored (NaN left out), ``(K,)`` per column or ``()``.
        low: the lower end of the interval, the same shape.
        high: its upper end.
    """

    mean: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def tolist(self) -> list[tuple[float, float, float]]:
        """``(mean, low, high)`` per column, as Python numbers (one read)."""
        rows = torch.stack([self.mean, self.low, self.high], dim=-1).reshape(-1, 3)
        return [(row[0], row[1], row[2]) for row in rows.tolist()]


def resample_rows(rows: int, resamples: int, seed: int, device: torch.device) -> torch.Tensor:
    """Row indices ``(resamples, rows)`` drawn with replacement, seeded, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randint(0, max(rows, 1), (resamples, rows), generator=generator)
    return to_device(drawn, device)


def _nanmean(values: torch.Tensor, dim: tuple[int, ...] | int) -> torch.Tensor:
    scored = ~torch.isnan(values)
    total = torch.where(scored, values, torch.zeros_like(values)).sum(dim=dim)
    count = scored.sum(dim=dim)
    return total / count  # NaN where nothing was scored (0 / 0)


def bootstrap_mean(
    values: torch.Tensor,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    pooled: bool = False,
) -> Interval:
    r"""The mean of per-image values and its bootstrap percentile interval.

    The rows (images) of ``values`` are drawn with replacement ``resamples`` times; each
    column's statistic is the mean of a resample's values that are not NaN,
    $\bar v^{(b)} = \sum_{i} v_{r_{bi}} [v_{r_{bi}} \ne \mathrm{NaN}] / \#\{\ldots\}$,
    and the interval holds the middle ``confidence`` of the $\bar v^{(b)}$
    (linear interpolation between order statistics, as ``torch.quantile``). Columns
    (classes) are resampled together, by rows, as CheXlocalize resamples images
    (Saporta et al., 2022). A resample without a scored value gives NaN and is left out
    of the interval.

    Args:
        values: float tensor ``(N,)`` or ``(N, K)``; NaN marks a value not scored.
        resamples: how many resamples (an int >= 0; 0 gives NaN ends).
        confidence: the interval's level, in (0, 1).
        seed: seed of the resampling (an int >= 0).
        pooled: one statistic over every column (the mean of all values scored) instead
            of one per column.

    Returns:
        [`Interval`][normgrad.metrics.Interval] in float64: ``(K,)`` per column, ``()``
        for ``(N,)`` values or ``pooled``.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import bootstrap_mean
        >>> r = bootstrap_mean(torch.tensor([1.0, 0.0, float("nan"), 1.0]), seed=0)
        >>> round(float(r.mean), 3), float(r.low), float(r.high)
        (0.667, 0.0, 1.0)
    """
    if not isinstance(values, torch.Tensor) or values.ndim not in (1, 2):
        raise (ArgumentTypeError if not isinstance(values, torch.Tensor) else ShapeError)(
            f"values: expected a float tensor (N,) or (N, K), got {describe(values)}"
        )
    resamples, seed = check_count(resamples, "resamples"), check_count(seed, "seed")
    confidence = check_confidence(confidence)
    table = values.detach().to(torch.float64)
    table = table[:, None] if table.ndim == 1 else table
    reduce: tuple[int, ...] = (0, 1) if pooled else (0,)
    mean = _nanmean(table, reduce)
    rows = resample_rows(table.shape[0], resamples, seed, table.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, table.numel()))
    means = [
        _nanmean(table[chunk], tuple(d + 1 for d in reduce)) for chunk in torch.split(rows, step)
    ]
    alpha = (1 - confidence) / 2
    if resamples and table.shape[0]:
        stats = torch.cat(means)  # (resamples, K) or (resamples,)
        q = to_device([alpha, 1 - alpha], table.device, torch.float64)
        low, high = torch.nanquantile(stats, q, dim=0)
    else:
        low = high = torch.full_like(mean, float("nan"))
    if values.ndim == 1 and not pooled:
        mean, low, high = mean[0], low[0], high[0]
    return Interval(mean, low, high)
