r"""Metrics that judge saliency maps: Pointing Game, Difference of Means, smoothing, baselines.

All functions work on batches, run on the saliency's device, and accept 2-D maps
``(N, 1, H, W)`` / ``(N, H, W)`` and 3-D maps ``(N, 1, D, H, W)`` / ``(N, D, H, W)``. A 4-D
tensor whose second dimension is 1 is read as ``(N, 1, H, W)``: pass volumes of depth 1 as
``(N, 1, 1, H, W)``.

Pointing Game (Zhang et al., 2016, with TorchRay's benchmark semantics): the point is the
first maximum of the map in row-major (C) order; it is a hit when a region's pixel lies
*strictly* inside the disk (ball) of radius ``tolerance`` around it,
$\sum_i ((p_i - t_i) s_i)^2 < \tau^2$ with voxel spacing $s$ (1 by default).

One module per idea: reading maps and their first maximum (``_maps``), regions and their
geometry (``_regions``: the forms they arrive in, boxes, shapes, the one prepared value
every metric reads, its pixels), the accumulators' one shape (``_accumulator``), the
Pointing Game (``_pointing``), its distances (``_distance``) and its curve over tolerances
(``_curve``), its random point (``_random_point``), the peaks of a map (``_peaks``,
their definition; ``_peak_search``, the fast search), detections matched to objects
(``_matching``), FROC (``_froc``), the energy-based (``_energy``) and multi-object
(``_multi_pointing``) pointing games, deletion and insertion (``_deletion``, the one metric
that runs a model), smoothing (``_smoothing``), rank correlation (``_correlation``), maps as
segmentations (``_binarize``), IoU and hit rate (``_overlap``), localisation AUPRC
(``_auprc``), SSIM (``_ssim``) and map similarity (``_similarity``), CheXlocalize's
protocol (``_chexlocalize``), bootstrap intervals (``_bootstrap``) and
statistics over runs (``_statistics``); everything is imported from ``normgrad.metrics``
(``collate`` lives beside the package, in ``normgrad._collate``).

Examples:
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

from .._collate import collate
from ._auprc import AUPRCResult, localization_auprc
from ._binarize import binarize
from ._bootstrap import Interval, bootstrap_mean
from ._chexlocalize import (
    CheXlocalizeResult,
    CheXlocalizeScore,
    TunedThresholds,
    chexlocalize,
    gate,
    tune_thresholds,
)
from ._correlation import rank_correlation
from ._curve import PointingGameCurve, pointing_game_curve, pointing_hits
from ._deletion import Baseline, DeletionInsertionResult, DeletionOptions, deletion_insertion
from ._distance import pointing_distances
from ._energy import energy_pointing_game
from ._froc import FROC, RATES, FROCResult, froc
from ._maps import points
from ._multi_pointing import multi_pointing_game
from ._overlap import hit_rate, iou
from ._peaks import Peaks, peaks
from ._per_class import ClassRegions, pointing_game_per_class
from ._pointing import PointingGame, PointingGameResult, pointing_game
from ._random_point import random_point_hit_rate
from ._regions.forms import Objects
from ._regions.prepared import PreparedRegions, Regions, prepare_regions
from ._regions.shapes import Box, Ellipse, Polygon, Shape, shapes_mask
from ._similarity import SIMILARITY_MEASURES, map_agreement, map_similarity
from ._smoothing import gaussian_kernel, smooth
from ._statistics import DoMResult, dom, wilson_interval

__all__ = [
    "FROC",
    "RATES",
    "SIMILARITY_MEASURES",
    "AUPRCResult",
    "Baseline",
    "Box",
    "CheXlocalizeResult",
    "CheXlocalizeScore",
    "ClassRegions",
    "DeletionInsertionResult",
    "DeletionOptions",
    "DoMResult",
    "Ellipse",
    "FROCResult",
    "Interval",
    "Objects",
    "Peaks",
    "PointingGame",
    "PointingGameCurve",
    "PointingGameResult",
    "Polygon",
    "PreparedRegions",
    "Regions",
    "Shape",
    "TunedThresholds",
    "binarize",
    "bootstrap_mean",
    "chexlocalize",
    "collate",
    "deletion_insertion",
    "dom",
    "energy_pointing_game",
    "froc",
    "gate",
    "gaussian_kernel",
    "hit_rate",
    "iou",
    "localization_auprc",
    "map_agreement",
    "map_similarity",
    "multi_pointing_game",
    "peaks",
    "pointing_distances",
    "pointing_game",
    "pointing_game_curve",
    "pointing_game_per_class",
    "pointing_hits",
    "points",
    "prepare_regions",
    "random_point_hit_rate",
    "rank_correlation",
    "shapes_mask",
    "smooth",
    "tune_thresholds",
    "wilson_interval",
]
