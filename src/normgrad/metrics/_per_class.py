"""Several classes per image (multi-label): maps ``(N, K, *spatial)`` and regions per class.

Each (image, class) pair is scored as an image of its own: the maps and the regions are
flattened, sample-major (pair ``n * K + k``), to the forms every metric reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, ShapeError, describe
from ._pointing import pointing_game
from ._regions.prepared import PreparedRegions, Regions, prepare

ClassRegions = Union[torch.Tensor, np.ndarray, Sequence[Sequence[Any]]]
"""Regions per class of each image, for maps ``(N, K, *spatial)``: boolean masks
``(N, K, *spatial)`` (a tensor or numpy array), the boxes padded to one float tensor
``(N, K, B, 4)`` (``(N, K, B, 6)`` for volumes; all-NaN rows are padding), or a sequence
of N sequences of K regions, each in any per-sample form of
[`Regions`][normgrad.metrics.Regions] (a box tensor ``(B_i, 4)``, a list of boxes or
shapes; an empty one: no region of that class). A sequence of N region tensors (one per
image, not per class) is refused: whether its rows are boxes or classes cannot be told."""

_FORMS = (
    "boolean masks (N, K, *spatial), boxes padded to (N, K, B, 4 or 6), or a sequence of "
    "N sequences of K regions (one per class)"
)


def per_class_maps(saliency: torch.Tensor) -> torch.Tensor:
    """Maps ``(N, K, H, W)`` or ``(N, K, D, H, W)`` as ``N * K`` maps ``(N * K, *spatial)``."""
    if not isinstance(saliency, torch.Tensor) or saliency.ndim not in (4, 5):
        raise ShapeError(
            "saliency: expected maps per class (N, K, H, W) or (N, K, D, H, W), as an "
            f"explainer returns for a target (N, K); got {describe(saliency)}",
            getattr(saliency, "shape", None),
        )
    return saliency.flatten(0, 1)


def per_class_regions(regions: ClassRegions, n: int, k: int) -> Regions:
    """``regions`` of ``N`` images and ``K`` classes as the regions of ``N * K`` maps,
    sample-major; an ambiguous form raises naming ``regions``."""
    if isinstance(regions, np.ndarray):
        regions = torch.from_numpy(np.array(regions))
    if isinstance(regions, PreparedRegions):
        raise ArgumentTypeError(
            f"regions: expected regions per class, {_FORMS}; prepared regions are per map "
            "already: flatten the pairs yourself or give the regions per class"
        )
    if isinstance(regions, torch.Tensor):
        if regions.ndim < 3 or tuple(regions.shape[:2]) != (n, k):
            raise ShapeError(
                f"regions: expected {_FORMS}, with N = {n} and K = {k}; got shape "
                f"{tuple(regions.shape)}",
                regions.shape,
            )
        return regions.flatten(0, 1)
    if not isinstance(regions, Sequence) or isinstance(regions, str) or len(regions) != n:
        raise ShapeError(
            f"regions: expected {_FORMS}, with N = {n}; got {describe(regions)}",
            None,
        )
    flat: list[Any] = []
    for i, per_image in enumerate(regions):
        if (
            isinstance(per_image, (torch.Tensor, np.ndarray, str))
            or not isinstance(per_image, Sequence)
            or len(per_image) != k
        ):
            raise ArgumentTypeError(
                f"regions[{i}]: expected the regions of image {i} per class, a sequence "
                f"of K = {k} regions (one per class explained, empty for none), got "
                f"{describe(per_image)}; a tensor of boxes is ambiguous (boxes or classes): "
                "wrap each class's boxes in a list of K entries"
            )
        flat.extend(per_image)
    return flat


def pointing_game_per_class(
    saliency: torch.Tensor,
    regions: ClassRegions,
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    """The Pointing Game of each class of each image, for multi-label data.

    Class ``k``'s map of image ``n`` is scored against that image's regions of class ``k``
    (as CheXlocalize gives them: a segmentation per pathology), exactly as
    [`pointing_game`][normgrad.metrics.pointing_game] scores one map against its regions.

    Args:
        saliency: maps ``(N, K, H, W)`` or ``(N, K, D, H, W)``, as an explainer returns for
            a target ``(N, K)`` (column ``k`` of the target is class ``k``'s map).
        regions: the regions per class ([`ClassRegions`][normgrad.metrics.ClassRegions]):
            masks ``(N, K, *spatial)``, padded boxes ``(N, K, B, 4)``, or per image a
            sequence of ``K`` regions.
        tolerance: as in ``pointing_game``.
        spacing: as in ``pointing_game``.

    Returns:
        float32 tensor ``(N, K)``: 1.0 hit, 0.0 miss, NaN where that class of that image
        has no region (not counted). The mean over one column (its non-NaN values) is the
        accuracy of that class. Over a data set, a
        [`PointingGame`][normgrad.metrics.PointingGame] per class takes each batch's
        column ``k`` with ``add(hits[:, k])`` (one for all pairs: ``add(hits.flatten())``).

    Examples:
        >>> import torch
        >>> from normgrad import metrics
        >>> maps = torch.zeros(1, 2, 8, 8)
        >>> maps[0, 0, 2, 2] = maps[0, 1, 6, 6] = 1
        >>> masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
        >>> masks[0, 0, 1:4, 1:4] = masks[0, 1, 1:4, 1:4] = True
        >>> metrics.pointing_game_per_class(maps, masks, tolerance=0).tolist()
        [[1.0, 0.0]]
    """
    maps = per_class_maps(saliency)
    n, k = saliency.shape[:2]
    with deferred_checks():  # the regions' checks read with the Pointing Game's
        # errors name a region regions[image][class][j], as given
        pairs = prepare(per_class_regions(regions, n, k), maps.shape, maps.device, per_class=k)
        scores = pointing_game(maps.unsqueeze(1), pairs, tolerance, spacing)
    return scores.view(n, k)
