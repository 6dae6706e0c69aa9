r"""Metrics that judge saliency maps: Pointing Game, Difference of Means, smoothing, baselines.

All functions work on batches, run on the saliency's device, and accept 2-D maps
``(N, 1, H, W)`` / ``(N, H, W)`` and 3-D maps ``(N, 1, D, H, W)`` / ``(N, D, H, W)``. A 4-D
tensor whose second dimension is 1 is read as ``(N, 1, H, W)``: pass volumes of depth 1 as
``(N, 1, 1, H, W)``.

Pointing Game (Zhang et al., 2016, with TorchRay's benchmark semantics): the point is the
first maximum of the map in row-major (C) order; it is a hit when a target pixel lies
*strictly* inside the disk (ball) of radius ``tolerance`` around it,
:math:`\sum_i ((p_i - t_i) s_i)^2 < \tau^2` with voxel spacing :math:`s` (1 by default).

Example:
    >>> import torch
    >>> from normgrad import metrics
    >>> saliency = torch.zeros(2, 1, 50, 50)
    >>> saliency[0, 0, 10, 10] = 1    # points at x=10, y=10
    >>> saliency[1, 0, 40, 40] = 1
    >>> boxes = [torch.tensor([[20, 5, 30, 15]]), torch.tensor([[0, 0, 5, 5]])]
    >>> metrics.pointing_game(saliency, boxes, tolerance=15)
    tensor([1., 0.])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Union

import numpy as np
import torch
import torch.nn.functional as tf

from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe

__all__ = [
    "DoMResult",
    "PointingGame",
    "PointingGameResult",
    "Targets",
    "dom",
    "gaussian_kernel",
    "pointing_game",
    "random_point_hit_rate",
    "rank_correlation",
    "smooth",
    "wilson_interval",
]

Targets = Union[torch.Tensor, Sequence[torch.Tensor]]
"""Target regions: boolean masks ``(N, *spatial)`` (or ``(N, 1, *spatial)``), or per sample
a tensor ``(K_i, 4)`` of boxes ``(xmin, ymin, xmax, ymax)`` in pixels, inclusive (``(K_i, 6)``
``(xmin, ymin, zmin, xmax, ymax, zmax)`` for volumes). ``K_i = 0`` means no target."""

# Elements per chunk when masks are compared with distance grids.
_CHUNK_ELEMENTS = 1 << 24
# Elements per block when maps are searched for their maximum (see _points).
_BLOCK_ELEMENTS = 4096


def _as_maps(saliency: object, argument: str = "saliency") -> torch.Tensor:
    """``(N, *spatial)`` view of ``(N, 1, *spatial)`` or ``(N, *spatial)`` maps, 2-D or 3-D."""
    if not isinstance(saliency, torch.Tensor):
        raise ArgumentTypeError(f"{argument}: expected a tensor, got {describe(saliency)}")
    maps = saliency
    if maps.ndim in (4, 5) and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim not in (3, 4):
        raise ShapeError(
            f"{argument}: expected maps of shape (N, 1, H, W), (N, H, W), (N, 1, D, H, W) or "
            f"(N, D, H, W), got shape {tuple(saliency.shape)}",
            saliency.shape,
        )
    if maps.is_complex() or maps.dtype == torch.bool:
        raise ArgumentTypeError(f"{argument}: expected real values, got dtype {maps.dtype}")
    return maps


def _spacing(spacing: Sequence[float] | None, ndim: int, device: torch.device) -> torch.Tensor:
    if spacing is None:
        return torch.ones(ndim, dtype=torch.float64, device=device)
    values = [float(s) for s in spacing]
    if len(values) != ndim or any(not s > 0 or not math.isfinite(s) for s in values):
        raise InvalidArgumentError(
            f"spacing: expected {ndim} positive voxel sizes in array order "
            f"({'(D, H, W)' if ndim == 3 else '(H, W)'}), got {tuple(spacing)}"
        )
    return torch.tensor(values, dtype=torch.float64, device=device)


def _check_tolerance(tolerance: float) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise ArgumentTypeError(f"tolerance: expected a number >= 0, got {describe(tolerance)}")
    if not tolerance >= 0 or not math.isfinite(tolerance):
        raise InvalidArgumentError(f"tolerance: expected a finite number >= 0, got {tolerance}")
    return float(tolerance)


def _block_length(length: int, row: int, target: int) -> int:
    """Largest divisor of ``length`` that is at most ``max(target, row)``."""
    for size in range(min(length, max(target, row)), 0, -1):
        if length % size == 0:
            return size
    return 1


def _points(maps: torch.Tensor, block: int = _BLOCK_ELEMENTS) -> torch.Tensor:
    """First maximum of each map in C order, as indices ``(N, ndim)`` in array order.

    ``argmax`` over a whole map is slow (it tracks indices element by element); instead each
    flattened map is cut into contiguous blocks of about ``block`` elements whose maxima are
    taken at memory speed, then the first block holding the map's maximum is searched for
    its first occurrence: the same point, first in row-major order.
    """
    n, *spatial = maps.shape
    length = math.prod(spatial)
    size = _block_length(length, spatial[-1], block)
    blocks = maps.reshape(n, length // size, size)
    block_max = blocks.amax(dim=2)
    top = block_max.amax(dim=1)
    if maps.is_floating_point() and bool(torch.isnan(top).any()):
        bad = int(torch.isnan(top).sum())
        raise InvalidArgumentError(
            f"saliency: expected maps without NaN, got NaN in {bad} map(s); a NaN has no place "
            "in a ranking, so no point can be chosen"
        )
    first = (block_max == top[:, None]).to(torch.uint8).argmax(dim=1)
    chosen = torch.arange(n, device=maps.device) * blocks.shape[1] + first
    values = blocks.reshape(-1, size).index_select(0, chosen)
    offset = (values == top[:, None]).to(torch.uint8).argmax(dim=1)
    flat = first * size + offset
    coords = []
    for extent in reversed(spatial):
        coords.append(flat % extent)
        flat = flat // extent
    return torch.stack(coords[::-1], dim=1)


def _boxes_to_ranges(
    targets: Sequence[torch.Tensor], spatial: Sequence[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate per-sample boxes into (sample index, lo, hi, valid), clipped, array order.

    Only shapes are looked at per sample; values are checked once on the concatenation.
    """
    ndim = len(spatial)
    width = 2 * ndim
    order = "xmin, ymin, xmax, ymax" if ndim == 2 else "xmin, ymin, zmin, xmax, ymax, zmax"
    tensors = []
    for i, boxes in enumerate(targets):
        b = boxes if isinstance(boxes, torch.Tensor) else torch.as_tensor(boxes)
        if b.numel() == 0:
            b = b.reshape(0, width)
        elif b.ndim == 1:
            b = b.unsqueeze(0)
        if b.ndim != 2 or b.shape[1] != width:
            raise ShapeError(
                f"targets[{i}]: expected boxes of shape (K, {width}) ({order}), "
                f"got shape {tuple(b.shape)}",
                b.shape,
            )
        tensors.append(b)
    counts = torch.tensor([b.shape[0] for b in tensors], device=device)
    if not tensors or int(counts.sum()) == 0:
        empty = torch.empty(0, ndim, dtype=torch.float64, device=device)
        none = torch.empty(0, dtype=torch.long, device=device)
        return none, empty, empty, torch.empty(0, dtype=torch.bool, device=device)
    boxes = torch.cat([b.to(device) for b in tensors]).to(torch.float64)
    owner = torch.repeat_interleave(torch.arange(len(tensors), device=device), counts)
    bad = ~torch.isfinite(boxes).all(dim=1) | (boxes[:, :ndim] > boxes[:, ndim:]).any(dim=1)
    if bool(bad.any()):
        first = int(owner[bad][0])
        rows = boxes[owner == first].tolist()
        raise InvalidArgumentError(
            f"targets[{first}]: expected finite boxes ({order}) with min <= max for every "
            f"coordinate, got {rows}"
        )
    # box coordinates are (x, y[, z]); array order is ([z,] y, x)
    lo = boxes[:, :ndim].flip(1).ceil().clamp_min(0)
    limit = torch.tensor([s - 1 for s in spatial], dtype=torch.float64, device=device)
    hi = torch.minimum(boxes[:, ndim:].flip(1).floor(), limit)
    valid = (lo <= hi).all(dim=1)
    return owner, lo, hi, valid


def _hits_from_boxes(
    points: torch.Tensor,
    targets: Sequence[torch.Tensor],
    spatial: Sequence[int],
    tolerance: float,
    spacing: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    n = points.shape[0]
    owner, lo, hi, valid = _boxes_to_ranges(targets, spatial, points.device)
    p = points[owner].to(torch.float64)
    # the box pixel nearest to an integer point is the point clamped to the box
    nearest = torch.maximum(torch.minimum(p, hi), lo)
    dist2 = (((p - nearest) * spacing) ** 2).sum(dim=1)
    hit_box = valid & (dist2 < tolerance**2)
    hits = torch.zeros(n, dtype=torch.float64, device=points.device).index_add_(
        0, owner, hit_box.double()
    )
    has = torch.zeros(n, dtype=torch.float64, device=points.device).index_add_(
        0, owner, valid.double()
    )
    return hits > 0, has > 0


def _hits_from_masks(
    points: torch.Tensor, masks: torch.Tensor, tolerance: float, spacing: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n, *spatial = masks.shape
    per_sample = max(1, math.prod(spatial))
    chunk = max(1, _CHUNK_ELEMENTS // per_sample)
    hits = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        dist2 = torch.zeros((stop - start, *spatial), dtype=torch.float64, device=masks.device)
        for axis, size in enumerate(spatial):
            offsets = torch.arange(size, device=masks.device, dtype=torch.float64)
            delta = (offsets[None, :] - points[start:stop, axis : axis + 1]) * spacing[axis]
            shape = [stop - start] + [1] * len(spatial)
            shape[axis + 1] = size
            dist2 = dist2 + (delta**2).view(shape)
        inside = (dist2 < tolerance**2) & masks[start:stop]
        hits.append(inside.flatten(1).any(dim=1))
    return torch.cat(hits), masks.flatten(1).any(dim=1)


def _as_masks(targets: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    masks = targets
    if masks.ndim == maps.ndim + 1 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape != maps.shape:
        raise ShapeError(
            f"targets: expected boolean masks of shape {tuple(maps.shape)} like the saliency "
            f"maps, got shape {tuple(targets.shape)}",
            targets.shape,
        )
    if masks.dtype != torch.bool:
        raise ArgumentTypeError(
            "targets: expected boolean masks (or a list of boxes per sample), "
            f"got dtype {masks.dtype}"
        )
    return masks.to(maps.device)


def pointing_game(
    saliency: torch.Tensor,
    targets: Targets,
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    """Pointing Game hit or miss for each map.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, without NaN.
        targets: boolean masks ``(N, *spatial)``, or a sequence of N box tensors ``(K_i, 4)``
            ``(xmin, ymin, xmax, ymax)`` in pixels, inclusive (``(K_i, 6)`` with z for
            volumes). Boxes are clipped to the image; a box of zero width still covers its
            row or column of pixels; a box wholly outside the image covers nothing.
        tolerance: radius of the disk around the point, in pixels (or in the units of
            ``spacing``). A target exactly ``tolerance`` away is a miss.
        spacing: size of a pixel (voxel) along each array dimension, e.g. millimetres.

    Returns:
        float32 tensor ``(N,)`` on the saliency's device: 1.0 for a hit, 0.0 for a miss, NaN
        where the sample has no target region.
    """
    maps = _as_maps(saliency)
    tol = _check_tolerance(tolerance)
    spatial = list(maps.shape[1:])
    space = _spacing(spacing, len(spatial), maps.device)
    if isinstance(targets, torch.Tensor) and targets.dtype == torch.bool:
        masks = _as_masks(targets, maps)
        points = _points(maps)
        hit, has = _hits_from_masks(points, masks, tol, space)
    elif isinstance(targets, Sequence) and not isinstance(targets, (str, torch.Tensor)):
        if len(targets) != maps.shape[0]:
            raise ShapeError(
                f"targets: expected one box tensor per map ({maps.shape[0]}), got {len(targets)}",
                (len(targets),),
            )
        points = _points(maps)
        hit, has = _hits_from_boxes(points, targets, spatial, tol, space)
    else:
        raise ArgumentTypeError(
            f"targets: expected boolean masks or a list of box tensors, got {describe(targets)}"
        )
    result = hit.to(torch.float32)
    return torch.where(has, result, torch.full_like(result, float("nan")))


def wilson_interval(hits: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``hits / total`` (NaN when empty)."""
    from scipy.stats import norm

    if total == 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = hits / total
    denom = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PointingGameResult:
    """Pointing Game accuracy over the counted samples, with a Wilson interval."""

    accuracy: float
    hits: int
    total: int
    skipped: int
    """Samples without a target region, not counted."""
    low: float
    high: float
    confidence: float

    def __str__(self) -> str:
        return (
            f"{self.accuracy:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"({self.hits}/{self.total}, {self.confidence:.0%} Wilson)"
        )


class PointingGame:
    """Accumulates Pointing Game hits over batches: ``update``, ``compute``, ``reset``.

    Example:
        >>> import torch
        >>> from normgrad.metrics import PointingGame
        >>> game = PointingGame(tolerance=2)
        >>> maps = torch.zeros(3, 1, 8, 8); maps[:, 0, 4, 4] = 1
        >>> masks = torch.zeros(3, 8, 8, dtype=torch.bool)
        >>> masks[0, 5, 5] = True; masks[1, 0, 0] = True
        >>> game.update(maps, masks)
        tensor([1., 0., nan])
        >>> game.compute().accuracy
        0.5
    """

    def __init__(
        self,
        tolerance: float = 15,
        spacing: Sequence[float] | None = None,
        confidence: float = 0.95,
    ) -> None:
        self.tolerance = _check_tolerance(tolerance)
        self.spacing = spacing
        if not 0 < confidence < 1:
            raise InvalidArgumentError(f"confidence: expected a number in (0, 1), got {confidence}")
        self.confidence = confidence
        self.reset()

    def reset(self) -> None:
        self.hits = 0
        self.total = 0
        self.skipped = 0

    def update(self, saliency: torch.Tensor, targets: Targets) -> torch.Tensor:
        """Score a batch and add it; returns its per-sample results (1, 0 or NaN)."""
        results = pointing_game(saliency, targets, self.tolerance, self.spacing)
        self.add(results)
        return results

    def add(self, results: torch.Tensor) -> None:
        """Add per-sample results computed elsewhere (1, 0 or NaN)."""
        counted = ~torch.isnan(results)
        self.hits += int(results[counted].sum().item())
        self.total += int(counted.sum().item())
        self.skipped += int((~counted).sum().item())

    def compute(self) -> PointingGameResult:
        accuracy = self.hits / self.total if self.total else float("nan")
        low, high = wilson_interval(self.hits, self.total, self.confidence)
        return PointingGameResult(
            accuracy, self.hits, self.total, self.skipped, low, high, self.confidence
        )


def _target_masks(targets: Targets, spatial: Sequence[int]) -> np.ndarray:
    """Boolean masks (N, *spatial) as a numpy array, from masks or boxes."""
    if isinstance(targets, torch.Tensor):
        masks = targets
        if masks.ndim == len(spatial) + 2 and masks.shape[1] == 1:
            masks = masks[:, 0]
        return masks.detach().cpu().numpy().astype(bool)
    out = np.zeros((len(targets), *spatial), dtype=bool)
    owner, lo, hi, valid = _boxes_to_ranges(targets, spatial, torch.device("cpu"))
    for i, a, b, ok in zip(owner.tolist(), lo.long().tolist(), hi.long().tolist(), valid.tolist()):
        if ok:
            out[(i, *(slice(x, y + 1) for x, y in zip(a, b)))] = True
    return out


def random_point_hit_rate(
    targets: Targets,
    shape: Sequence[int],
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    """Exact expected Pointing Game hit rate of a uniformly random point, per sample.

    The fraction of pixels whose disk of radius ``tolerance`` (strictly) reaches a target
    pixel: the area of the target region dilated by the open disk, over the image area.
    Computed exactly with a Euclidean distance transform, not sampled.

    Args:
        targets: masks or boxes, as for :func:`pointing_game`.
        shape: the spatial shape of the maps, ``(H, W)`` or ``(D, H, W)``.
        tolerance: as for :func:`pointing_game`.
        spacing: as for :func:`pointing_game`.

    Returns:
        float64 tensor ``(N,)`` of probabilities, NaN where the sample has no target.
    """
    from scipy.ndimage import distance_transform_edt

    tol = _check_tolerance(tolerance)
    spatial = [int(s) for s in shape]
    space = _spacing(spacing, len(spatial), torch.device("cpu")).tolist()
    masks = _target_masks(targets, spatial)
    rates = np.full(masks.shape[0], np.nan)
    grid = np.indices(masks.shape[1:], dtype=np.float64)
    scale = np.asarray(space, dtype=np.float64).reshape(-1, *([1] * len(spatial)))
    for i, mask in enumerate(masks):  # one distance transform per image
        if mask.any():
            # the nearest target pixel of every pixel; its squared distance is compared with
            # tolerance**2 exactly as pointing_game does
            nearest = distance_transform_edt(
                ~mask, sampling=space, return_distances=False, return_indices=True
            )
            dist2 = (((grid - nearest) * scale) ** 2).sum(axis=0)
            rates[i] = float((dist2 < tol**2).mean())
    return torch.from_numpy(rates)


def gaussian_kernel(
    sigma: float,
    kernel_size: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel of odd length ``kernel_size``."""
    if not sigma > 0:
        raise InvalidArgumentError(f"sigma: expected a number > 0, got {sigma}")
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise InvalidArgumentError(
            f"kernel_size: expected an odd positive int, got {kernel_size!r}"
        )
    x = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def smooth(saliency: torch.Tensor, sigma: float = 1.0, kernel_size: int = 11) -> torch.Tensor:
    """Gaussian smoothing of saliency maps, as in the paper (sigma 1, kernel 11, reflection).

    Separable convolution with a normalised Gaussian of ``kernel_size`` taps along every
    spatial dimension, with reflection padding (scipy's ``mode="mirror"``), on the maps'
    device. Values stay in the range of the input.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, floating point.
        sigma: standard deviation in pixels.
        kernel_size: odd number of taps; every spatial size must exceed ``kernel_size // 2``.

    Returns:
        Smoothed maps of the same shape and dtype.
    """
    maps = _as_maps(saliency)
    if not maps.is_floating_point():
        raise ArgumentTypeError(f"saliency: expected floating point maps, got dtype {maps.dtype}")
    spatial = maps.shape[1:]
    pad = kernel_size // 2
    kernel = gaussian_kernel(sigma, kernel_size, maps.dtype, maps.device)
    if any(s <= pad for s in spatial):
        raise ShapeError(
            f"saliency: reflection padding of {pad} needs every spatial size > {pad} "
            f"(kernel_size {kernel_size}), got spatial shape {tuple(spatial)}",
            saliency.shape,
        )
    ndim = len(spatial)
    out = maps.reshape(-1, 1, *spatial)
    conv = tf.conv2d if ndim == 2 else tf.conv3d
    for axis in range(ndim):
        padding = [0, 0] * ndim
        # F.pad lists pads from the last dimension backwards
        padding[2 * (ndim - 1 - axis)] = pad
        padding[2 * (ndim - 1 - axis) + 1] = pad
        shape = [1, 1] + [1] * ndim
        shape[2 + axis] = kernel_size
        out = conv(tf.pad(out, padding, mode="reflect"), kernel.view(shape))
    return out.view(saliency.shape)


def rank_correlation(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between paired maps, per sample (ties get average ranks).

    Args:
        maps_a: maps ``(N, ...)``.
        maps_b: maps of the same shape.

    Returns:
        float64 tensor ``(N,)``; NaN where a map is constant.
    """
    from scipy.stats import rankdata

    if maps_a.shape != maps_b.shape:
        raise ShapeError(
            f"maps_b: expected the shape of maps_a {tuple(maps_a.shape)}, "
            f"got {tuple(maps_b.shape)}",
            maps_b.shape,
        )
    a = rankdata(maps_a.detach().flatten(1).double().cpu().numpy(), axis=1)
    b = rankdata(maps_b.detach().flatten(1).double().cpu().numpy(), axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (a * b).sum(axis=1) / denom
    return torch.from_numpy(rho)


@dataclass(frozen=True)
class DoMResult:
    """Difference of Means between two sets of repeated scores, with spread and significance."""

    dom: float
    """|mean(a) - mean(b)|."""
    mean_a: float
    mean_b: float
    std_a: float
    """Sample standard deviation (ddof=1) of a; NaN for a single run."""
    std_b: float
    p_value: float
    """Two-sided permutation p-value of the DoM (exact when the splits are few); NaN if not run."""
    low: float
    """Bootstrap percentile interval of the DoM; NaN if not run."""
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
    r"""Difference of Means, :math:`|\bar a - \bar b|`, of scores over repeated runs.

    The paper's consistency measure across architectures (MMD with a linear kernel in one
    dimension): ``scores_a`` are e.g. the Pointing Game accuracies of R independently
    trained ResNets, ``scores_b`` those of R EfficientNets.

    Beyond the paper, a permutation test of "both sets come from one distribution" (all
    splits enumerated when there are at most ``permutations`` of them, else random ones)
    and a bootstrap interval of the DoM (runs resampled within each set).

    Example:
        >>> r = dom([0.85, 0.86, 0.84], [0.80, 0.79, 0.81])
        >>> round(r.dom, 3), r.p_value
        (0.05, 0.1)
    """
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
    if bootstrap:
        ra = a[rng.integers(0, a.size, (bootstrap, a.size))].mean(axis=1)
        rb = b[rng.integers(0, b.size, (bootstrap, b.size))].mean(axis=1)
        draws = np.abs(ra - rb)
        alpha = (1 - confidence) / 2
        low, high = (float(v) for v in np.quantile(draws, [alpha, 1 - alpha]))
    return DoMResult(
        float(observed), float(a.mean()), float(b.mean()), _std(a), _std(b), p_value, low, high
    )


def _scores(values: Sequence[float] | torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy().ravel()
    return np.asarray(values, dtype=np.float64).ravel()


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")
