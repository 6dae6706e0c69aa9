"""Multi-object pointing game: how many of an image's objects its top peaks find."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .._checks import check_number
from .._deferred import deferred_checks
from .._errors import InvalidArgumentError
from .._transfer import to_device
from ._maps import as_maps
from ._matching import match
from ._peaks import Peaks, peaks
from ._regions.forms import Objects
from ._regions.prepared import PreparedRegions, prepare


def multi_pointing_game(
    saliency: torch.Tensor,
    regions: Objects | PreparedRegions,
    *,
    min_distance: float = 15,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    r"""Fraction of each image's objects found by its top-``K`` peaks, ``K`` its object count.

    The map's [`peaks`][normgrad.metrics.peaks] (at least ``min_distance`` apart) are matched to
    the objects as
    in [`froc`][normgrad.metrics.froc]: in order of decreasing value, a peak lying in an object not
    yet found
    finds it (the first such object in the order given), so one peak finds one object
    even where objects overlap. With one object this is the Pointing Game at tolerance 0
    (the point must lie in the object), except that a constant map has no peak.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, finite.
        regions: the objects of each image ([`Objects`][normgrad.metrics.Objects]): box tensors, or
            lists of
            [`Box`][normgrad.metrics.Box], [`Ellipse`][normgrad.metrics.Ellipse] and
            [`Polygon`][normgrad.metrics.Polygon]. Objects with no pixel in
            the image are not counted; those wholly outside it raise a ``UserWarning``
            naming their sample.
        min_distance: smallest distance between two peaks, in pixels or in the units of
            ``spacing``.
        spacing: size of a pixel (voxel) along each array dimension, e.g. millimetres.

    Reads the device once for the largest object count (how many peaks to find), as the
    peaks' search needs (see [`peaks`][normgrad.metrics.peaks]), and once for every check.

    Returns:
        float32 ``(N,)`` in ``[0, 1]``: found objects over ``K``; NaN where ``K = 0``.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import multi_pointing_game
        >>> maps = torch.zeros(1, 1, 8, 8); maps[0, 0, 1, 1] = 2; maps[0, 0, 6, 6] = 1
        >>> objects = [torch.tensor([[0, 0, 2, 2], [5, 5, 7, 7], [0, 5, 2, 7]])]
        >>> multi_pointing_game(maps, objects, min_distance=3)
        tensor([0.6667])
    """
    distance = check_number(min_distance, "min_distance", low=0)
    maps = as_maps(saliency)
    # the checks (the objects', the maps') are read together at the end; the largest
    # object count (how many peaks to find) and the peaks' search read what they need
    with deferred_checks():
        objects = prepare(regions, maps.shape, maps.device, one_by_one=True)
        k = peaks_needed(objects.counts())
        found = peaks(maps, k, min_distance=distance, spacing=spacing)
        return multi_from_peaks(found, objects)


def peaks_needed(counts: torch.Tensor) -> int:
    """The peaks per map the multi-object score reads: the largest object count (at
    least 1, as [`peaks`][normgrad.metrics.peaks] wants; one read: the count of objects
    given, padding rows and regions outside the map included, is known on the host, but
    the search's time and memory grow with the peaks searched)."""
    return max(1, int(counts.max())) if counts.numel() else 1


def multi_from_peaks(found: Peaks, objects: PreparedRegions) -> torch.Tensor:
    """The multi-object score from peaks already found: each image's first ``K`` peaks,
    ``K`` its object count, matched to its objects.

    ``found`` must hold at least ``peaks_needed(counts)`` peaks per map; more are fine
    (greedy suppression is prefix-consistent: the first ``K`` of more peaks are the ``K``
    peaks), so one search can serve FROC's ``k`` peaks too; fewer are refused at the end
    of the call's checks.
    """
    k = found.valid.shape[1]
    device = found.coords.device
    counts = to_device(objects.counts(), device)
    with deferred_checks() as checks:
        checks.add(counts.max() if counts.numel() else None, _enough(k))
    within = torch.arange(k, device=device)[None, :] < counts[:, None]
    _, hits = match(found.coords, found.valid & within, objects)
    share = hits.to(torch.float64) / counts.clamp_min(1)
    nan = torch.full_like(share, float("nan"))
    return torch.where(counts > 0, share, nan).to(torch.float32)


def _enough(k: int) -> Callable[[list[float]], None]:
    def check(most: list[float]) -> None:
        if most and most[0] > k:
            raise InvalidArgumentError(
                f"found: expected at least {int(most[0])} peaks per map (the largest object "
                f"count), got {k}"
            )

    return check
