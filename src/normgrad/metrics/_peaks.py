r"""The peaks of a map: its highest local maxima, kept apart by non-maximum suppression."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_number, check_positive_int
from .._errors import InvalidArgumentError
from ._maps import as_maps

# Candidates examined per map in the first round (doubled until k peaks are certain).
_FIRST_CANDIDATES = 64


@dataclass(frozen=True)
class Peaks:
    """The detections of a batch of maps, best first (made by :func:`peaks`)."""

    coords: torch.Tensor
    """int64 ``(N, k, ndim)``: each peak's pixel in array order ``(y, x)`` / ``(z, y, x)``;
    zeros where ``valid`` is False."""
    values: torch.Tensor
    """``(N, k)``: the map's value at each peak, non-increasing; NaN where not ``valid``."""
    valid: torch.Tensor
    """bool ``(N, k)``: False for the slots of a map with fewer than ``k`` peaks (always at
    the end)."""

    @property
    def counts(self) -> torch.Tensor:
        """How many peaks each map has ``(N,)``."""
        return self.valid.sum(dim=1)


def _local_maxima(maps: torch.Tensor) -> torch.Tensor:
    """Pixels not below any neighbour (3x3 / 3x3x3 window), flattened ``(N, P)``."""
    pool = F.max_pool2d if maps.ndim == 3 else F.max_pool3d
    neighbourhood = pool(maps.unsqueeze(1), kernel_size=3, stride=1, padding=1)[:, 0]
    return (maps >= neighbourhood).flatten(1)


def _ordered_candidates(
    values: torch.Tensor, candidate: torch.Tensor, m: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``m`` candidates of each row by value, ties in row-major order.

    Returns flat positions ``(N, m)``, values ``(N, m)`` and whether each is a candidate.
    """
    n = values.shape[0]
    masked = torch.where(candidate, values, torch.full_like(values, -torch.inf))
    threshold = masked.topk(m, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = masked > threshold
    tied = masked == threshold
    room = m - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(dim=1) <= room))
    positions = chosen.nonzero()[:, 1].view(n, m)  # row-major within each row
    picked = masked.gather(1, positions)
    order = picked.argsort(dim=1, descending=True, stable=True)
    positions = positions.gather(1, order)
    return positions, values.gather(1, positions), candidate.gather(1, positions)


def _suppress(
    coords: torch.Tensor, usable: torch.Tensor, k: int, min_distance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy non-maximum suppression over ordered candidates ``(N, m, ndim)``.

    Returns which candidates are kept ``(N, m)`` and whether the order was long enough to be
    sure of the result (k kept, or no candidate left unexamined).
    """
    n, m, _ = coords.shape
    c = coords.to(torch.float64)
    close = torch.cdist(c, c) < min_distance if min_distance > 0 else None
    kept = torch.zeros(n, m, dtype=torch.bool, device=coords.device)
    count = torch.zeros(n, dtype=torch.long, device=coords.device)
    for j in range(m):
        keep = usable[:, j] & (count < k)
        if close is not None and j:
            keep &= ~(close[:, j, :j] & kept[:, :j]).any(dim=1)
        kept[:, j] = keep
        count += keep.long()
    return kept, count


def peaks(saliency: torch.Tensor, k: int, *, min_distance: float = 1.0) -> Peaks:
    r"""The ``k`` highest local maxima of each map, at least ``min_distance`` apart.

    A pixel is a *local maximum* when no pixel of its 3×3 (3×3×3) neighbourhood is higher
    and it is above the map's minimum: every pixel of a flat-topped maximum is one, a flat
    background at the minimum is not, and a constant map has none. Local maxima are taken
    in order of decreasing value, ties in row-major order (as the Pointing Game's point),
    and each is kept when its Euclidean distance to every peak kept before is at least
    ``min_distance`` pixels (greedy non-maximum suppression), until ``k`` are kept. The first
    peak is therefore the Pointing Game's point (:func:`points`) unless the map is constant.

    Batched on the maps' device: the local maxima come from one 3×3 max-pooling, the best
    ``m`` of them (threshold by ``topk``, ties resolved in row-major order) are suppressed
    greedily, and ``m`` is doubled for the maps where ``m`` candidates were not enough.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, finite values.
        k: how many peaks per map, ``>= 1``.
        min_distance: smallest distance between two peaks in pixels, ``>= 0`` (1 or less
            keeps every local maximum, including the pixels of a plateau).

    Returns:
        :class:`Peaks` with ``coords`` ``(N, k, ndim)``, ``values`` ``(N, k)`` and ``valid``.

    Example:
        >>> maps = torch.zeros(1, 1, 5, 6)
        >>> maps[0, 0, 1, 1] = 3; maps[0, 0, 1, 2] = 2; maps[0, 0, 4, 5] = 1
        >>> found = peaks(maps, 3, min_distance=2)
        >>> found.coords[0].tolist(), found.values[0].tolist(), found.valid[0].tolist()
        ([[1, 1], [4, 5], [0, 0]], [3.0, 1.0, nan], [True, True, False])
    """
    k = check_positive_int(k, "k")
    distance = check_number(min_distance, "min_distance", low=0)
    maps = as_maps(saliency)
    if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
        bad = int((~torch.isfinite(maps)).flatten(1).any(dim=1).sum())
        raise InvalidArgumentError(
            f"saliency: expected finite maps, got NaN or infinite values in {bad} map(s); "
            "replace them (torch.nan_to_num) before looking for peaks"
        )
    n, *spatial = maps.shape
    work = maps if maps.is_floating_point() else maps.to(torch.float64)
    flat = work.flatten(1)
    candidate = _local_maxima(work) & (flat > flat.amin(dim=1, keepdim=True))
    length = flat.shape[1]
    strides = torch.tensor(
        [math.prod(spatial[i + 1 :]) for i in range(len(spatial))], device=maps.device
    )
    sizes = torch.tensor(spatial, device=maps.device)
    coords = torch.zeros(n, k, len(spatial), dtype=torch.long, device=maps.device)
    values = torch.full((n, k), float("nan"), dtype=work.dtype, device=maps.device)
    valid = torch.zeros(n, k, dtype=torch.bool, device=maps.device)
    todo = torch.arange(n, device=maps.device)
    m = min(length, max(_FIRST_CANDIDATES, 4 * k))
    while todo.numel():
        positions, picked, usable = _ordered_candidates(flat[todo], candidate[todo], m)
        cells = (positions[..., None] // strides) % sizes
        kept, count = _suppress(cells, usable, k, distance)
        done = (count == k) | ~usable[:, -1] | (m == length)
        rows = todo[done]
        slot = kept[done].long().cumsum(dim=1) - 1
        r, j = kept[done].nonzero(as_tuple=True)
        coords[rows[r], slot[r, j]] = cells[done][r, j]
        values[rows[r], slot[r, j]] = picked[done][r, j]
        valid[rows[r], slot[r, j]] = True
        todo = todo[~done]
        m = min(length, 2 * m)
    return Peaks(coords, values, valid)
