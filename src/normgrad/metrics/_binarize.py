r"""Saliency maps to binary masks, as CheXlocalize makes segmentations (Saporta et al., 2022).

Each map is min-max normalised to $[0, 1]$ first (a constant map becomes all zero); a
fixed threshold keeps the pixels above it, Otsu's method finds one per map from the
histogram of the normalised map quantised to 256 levels, as CheXlocalize feeds OpenCV
(``uint8(255 * m)``, ``cv2.threshold(..., cv2.THRESH_OTSU)``).
"""

from __future__ import annotations

import numbers
from functools import partial

import torch

from .._checks import check_number, check_positive_int
from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._transfer import to_device
from ._filters import filter_axes, reflect_101
from ._maps import _refuse_nan as refuse_nan_maxima
from ._maps import as_maps

#: Levels of the quantised map Otsu's method reads (OpenCV's 8-bit images).
LEVELS = 256


def refuse_nan(flat: torch.Tensor) -> None:
    """Refuse maps ``(N, L)`` holding NaN, read with the call's other checks."""
    if flat.is_floating_point() and flat.shape[1]:
        with deferred_checks() as checks:
            checks.add(flat.amax(dim=1), refuse_nan_maxima)


def _refuse_infinite(argument: str, flags: list[float]) -> None:
    bad = int(sum(flags))
    if bad:
        raise InvalidArgumentError(
            f"{argument}: expected finite maps, got NaN or +-inf in {bad} map(s); replace "
            "them (torch.nan_to_num) or find what made them"
        )


def min_max(maps: torch.Tensor, argument: str = "saliency") -> torch.Tensor:
    r"""Each map ``(N, *spatial)`` scaled to $[0, 1]$, $(m - \min m) / (\max m - \min m)$,
    in float64; a constant map becomes all zero. Maps holding NaN or $\pm\infty$ are
    refused (naming ``argument``) with the call's other checks."""
    flat = maps.detach().to(torch.float64).flatten(1)
    if not flat.shape[1]:
        return flat.reshape(maps.shape)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low  # finite exactly when the map is
    with deferred_checks() as checks:
        checks.add(~torch.isfinite(span[:, 0]), partial(_refuse_infinite, argument))
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1), 0.0)
    return scaled.reshape(maps.shape)


def box_smooth(maps: torch.Tensor, size: int) -> torch.Tensor:
    """The mean of each pixel's ``size``-wide window (``size ** ndim`` pixels), borders
    mirrored without repeating the edge (OpenCV's ``boxFilter`` default,
    ``BORDER_REFLECT_101``); maps ``(N, *spatial)``, float64."""
    size = check_positive_int(size, "smoothing", odd=True)
    return filter_axes(maps.to(torch.float64)[:, None], [1.0 / size] * size, reflect_101)[:, 0]


def quantize(normalized: torch.Tensor) -> torch.Tensor:
    """The 8-bit levels of maps in $[0, 1]$: ``floor(255 * m)`` (``np.uint8``
    truncates), long."""
    return torch.floor(normalized * (LEVELS - 1)).long().clamp(0, LEVELS - 1)


def otsu_levels(levels: torch.Tensor) -> torch.Tensor:
    r"""Otsu's threshold of each quantised map ``(N, *spatial)`` (levels 0-255): the level
    $t$ maximising the between-class variance
    $\sigma_B^2(t) = (\mu_T \omega(t) - \mu(t))^2 / (\omega(t) (1 - \omega(t)))$ of the
    256-bin histogram (one bin per level, range $[0, 255]$), $\omega$ and $\mu$ the
    cumulative share and first moment up to $t$; the first (lowest) of equal maxima, and
    0 when every pixel has one level (OpenCV's rule). Pixels above $t$ are foreground."""
    n = levels.shape[0]
    flat = levels.reshape(n, -1)
    hist = torch.zeros(n, LEVELS, dtype=torch.float64, device=levels.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    p = hist / max(flat.shape[1], 1)
    omega = p.cumsum(dim=1)
    grid = torch.arange(LEVELS, dtype=torch.float64, device=levels.device)
    mu = (p * grid).cumsum(dim=1)
    total = mu[:, -1:]
    eps = torch.finfo(torch.float32).eps  # OpenCV skips classes below FLT_EPSILON
    valid = (omega >= eps) & (1 - omega >= eps)
    between = (total * omega - mu) ** 2 / torch.where(valid, omega * (1 - omega), 1.0)
    between = torch.where(valid, between, -1.0)
    best = between.argmax(dim=1)  # the first maximum
    return torch.where(between.amax(dim=1) > 0, best, 0)


def _refuse_outside(argument: str, expected: str, fix: str, count: list[float]) -> None:
    if count[0]:
        raise InvalidArgumentError(
            f"{argument}: expected {expected} in [0, 1], got {int(count[0])} outside it or "
            f"NaN; {fix}"
        )


def refuse_outside_unit(values: torch.Tensor, argument: str, expected: str, fix: str) -> None:
    """Refuse ``values`` outside $[0, 1]$ or NaN, read with the call's other checks."""
    outside = ~((values >= 0) & (values <= 1))  # NaN too
    with deferred_checks() as checks:
        checks.add(outside.sum().view(1), partial(_refuse_outside, argument, expected, fix))


def _refuse_classes(count: int, fix: str, span: list[float]) -> None:
    low, high = int(span[0]), int(span[1])
    if low < 0 or high >= count:
        raise InvalidArgumentError(
            f"classes: expected class indices in [0, {count}), got values from {low} to "
            f"{high}; {fix}"
        )


def check_classes(
    classes: object, n: int, count: int | None, fix: str, device: torch.device
) -> tuple[torch.Tensor, int]:
    """The class of each of ``n`` maps as long ``(n,)`` on ``device``, and the number of
    classes (``count``, or ``classes.max() + 1`` read now when ``None``); indices outside
    ``[0, count)`` are refused (saying ``fix``) with the call's other checks, and clamped
    into it until then, so that no kernel indexes out of bounds."""
    if not isinstance(classes, torch.Tensor) or classes.shape != (n,):
        raise ShapeError(
            f"classes: expected an int tensor ({n},), the class each map explains, got "
            f"{describe(classes)}",
            getattr(classes, "shape", None),
        )
    if classes.is_floating_point() or classes.dtype == torch.bool:
        raise ArgumentTypeError(f"classes: expected integer class indices, got {classes.dtype}")
    labels = to_device(classes, device).long()
    if count is None:
        count = int(labels.amax()) + 1 if n else 0  # the tables' size: read on the host
    if n:
        with deferred_checks() as checks:
            checks.add(torch.stack(labels.aminmax()), partial(_refuse_classes, count, fix))
    return labels.clamp(0, max(count - 1, 0)), count


def _thresholds(threshold: object, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(threshold, torch.Tensor):
        if threshold.shape not in ((n,), ()):
            raise ShapeError(
                f"threshold: expected a number, 'otsu' or a tensor of one threshold per "
                f"map ({n},), got shape {tuple(threshold.shape)}; index per-class "
                "thresholds with each map's class: thresholds[classes]",
                threshold.shape,
            )
        values = to_device(threshold, device, torch.float64).expand(n)
        fix = "the maps are normalised to it: pass thresholds of the normalised maps"
        refuse_outside_unit(values, "threshold", "thresholds", fix)
        return values
    if isinstance(threshold, numbers.Real) and not isinstance(threshold, bool):
        value = check_number(threshold, "threshold", low=0, high=1)
        return torch.full((n,), value, dtype=torch.float64, device=device)
    raise ArgumentTypeError(
        f"threshold: expected 'otsu', a number in [0, 1] or a tensor ({n},) of them, got "
        f"{describe(threshold)}"
    )


def binarize(
    saliency: torch.Tensor,
    threshold: float | str | torch.Tensor = "otsu",
    *,
    smoothing: int | None = None,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Binary masks of saliency maps: min-max normalised, then thresholded (CheXlocalize).

    Each map $s$ becomes $m = (s - \min s) / (\max s - \min s)$ (all zero when constant).
    With a number or a tensor $t$ (one per map, in $[0, 1]$) the mask is $m > t$; with
    ``"otsu"`` it is $\lfloor 255 m \rfloor > t^*$, $t^*$ Otsu's threshold of the
    256-bin histogram of the levels $\lfloor 255 m \rfloor$ (range $[0, 255]$, one bin
    per level), as CheXlocalize computes it with OpenCV on ``uint8(255 * m)``.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, finite.
        threshold: ``"otsu"``, a number in ``[0, 1]``, a tensor ``(N,)`` of one per
            map, or with ``classes`` a tensor ``(K,)`` of one per class.
        smoothing: an odd window width: each map is first replaced by its box mean over
            ``smoothing`` pixels along every axis (borders mirrored, OpenCV's
            ``boxFilter``); ``None``: no smoothing.
        classes: the class of each map, int ``(N,)``, to read per-class thresholds
            ``threshold[classes]``.

    Returns:
        bool tensor ``(N, *spatial)``.

    Examples:
        >>> import torch
        >>> from normgrad.metrics import binarize
        >>> maps = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])
        >>> binarize(maps, 0.2).int().tolist()
        [[[0, 1], [1, 1]]]
        >>> binarize(maps).int().tolist()
        [[[0, 0], [0, 1]]]
    """
    with deferred_checks():  # the call's checks read once, together
        maps = as_maps(saliency)
        if smoothing is not None:
            maps = box_smooth(maps, smoothing)
        normalized = min_max(maps)
        n = maps.shape[0]
        if isinstance(threshold, str):
            if threshold != "otsu":
                raise ArgumentTypeError(
                    f"threshold: expected 'otsu', a number in [0, 1] or a tensor of them, "
                    f"got {threshold!r}"
                )
            levels = quantize(normalized)
            cut = otsu_levels(levels).view(n, *[1] * (maps.ndim - 1))
            return levels > cut
        if classes is not None and isinstance(threshold, torch.Tensor) and threshold.ndim == 1:
            fix = "pass one threshold per class"
            labels, _ = check_classes(classes, n, threshold.shape[0], fix, maps.device)
            threshold = to_device(threshold, maps.device)[labels]
        cut = _thresholds(threshold, n, maps.device).view(n, *[1] * (maps.ndim - 1))
        return normalized > cut
