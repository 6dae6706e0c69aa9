r"""Occlusion (Zeiler and Fergus, 2014): the drop of the score when a window is covered."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import (
    check_finite_input,
    check_finite_tensor,
    check_input,
    check_number,
    check_positive_int,
    check_sizes,
    fit_sizes,
)
from .._deferred import deferred_checks
from .._errors import InvalidArgumentError, ShapeError
from .._model.diagnosis import check_finite_scores
from .._model.per_class import classes_per_sample
from .._model.scoring import forward_scores
from .._model.targets import ClassTarget, ResolvedTarget
from .base import Explainer, Explanation, build_explanation, per_class
from .perturbation import _chunks, baseline_like


def window_positions(size: int, window: int, stride: int) -> int:
    r"""The number of window positions along an axis of ``size`` pixels, as Captum counts
    them: $\lceil (\mathrm{size} - \mathrm{window}) / \mathrm{stride} \rceil + 1$, the
    first at 0, the last cut off at the border when the stride does not divide
    ``size - window``."""
    return -(-(size - window) // stride) + 1


def window_rows(
    size: int, window: int, stride: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``(positions, size)``: row ``j`` is 1 on the pixels ``[j * stride, j * stride +
    window)`` of the axis (those inside it), else 0."""
    pixels = torch.arange(size, device=device)
    start = torch.arange(window_positions(size, window, stride), device=device)[:, None] * stride
    return ((pixels >= start) & (pixels < start + window)).to(dtype)


def _baseline(baseline: object) -> float | torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return check_finite_tensor(baseline.detach(), "baseline")
    return check_number(baseline, "baseline")  # says "a finite number" for anything else


class Occlusion(Explainer):
    r"""Occlusion (Zeiler and Fergus, ECCV 2014), as Captum's ``Occlusion``.

    A window of ``window`` pixels (voxels) slides over the image with steps of
    ``stride``; at each position $w$ the window's pixels, in every channel, are replaced by
    ``baseline``, giving $x_w$. A pixel's value is the mean score drop over the windows
    that cover it:

    $$
    \mathrm{Occ}(x)_u = \frac{1}{|\{w \ni u\}|} \sum_{w \ni u} \big(s(x) - s(x_w)\big)
    $$

    with $s$ the target's score (the class logit, as every explainer reads it, or a
    callable's score). ``raw`` is this signed map ``(N, 1, *spatial)``: Captum's
    attribution with ``sliding_window_shapes=(C, *window)``, ``strides=(C, *stride)``
    (equal in every channel); the saliency is its min-max normalisation.

    **Windows.** Along an axis of $S$ pixels there are
    $\lceil (S - W) / s \rceil + 1$ positions, at $0, s, 2s, \dots$; when the stride does
    not divide $S - W$, the last window starts less than $W$ pixels from the border and is
    cut off there (smaller than ``window``), so every pixel is covered, as in Captum. A
    window larger than the input, or a stride larger than the window (pixels no window
    covers) where the window does not span the axis, is refused, as Captum refuses them.

    **Cost.** One forward pass per position and image, plus one for the image itself:
    $1 + \prod_d (\lceil (S_d - W_d) / s_d \rceil + 1)$ passes per image (197 at
    224 px with ``window=16``, ``stride=16``: $14^2 + 1$), no gradient. Positions
    run ``batch_size`` inputs per model call (at least one whole copy of the batch), on
    the input's device, with no read of the device in the loop; memory does not grow
    with the number of positions, and the result does not depend on ``batch_size``.

    ``target=None`` means the class predicted for ``x``; every occluded copy is scored for
    that class. A callable target is called on each copy's output of N samples, as for the
    caller's batch. A target of ``K`` classes per sample ``(N, K)`` scores every class from
    the same occluded inputs: no more passes than one class.

    Args:
        model: the classifier.
        window: the window's size in pixels, one int for every axis or one per axis
            (``(H, W)`` or ``(D, H, W)``).
        stride: the step between positions, as ``window``; ``None``: the window's size
            (windows side by side, no overlap).
        baseline: what covers the window: a finite number or a finite tensor
            broadcastable to the input.
        batch_size: inputs per model call.

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> occlusion = normgrad.Occlusion(model, window=16, stride=8)
        >>> tuple(occlusion(torch.randn(1, 3, 32, 32)).shape)
        (1, 1, 32, 32)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        window: int | Sequence[int] = 16,
        stride: int | Sequence[int] | None = None,
        baseline: float | torch.Tensor = 0.0,
        batch_size: int = 64,
    ) -> None:
        super().__init__(model)
        self.window = check_sizes(window, "window")
        self.stride = self.window if stride is None else check_sizes(stride, "stride")
        self.baseline = _baseline(baseline)
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def _geometry(self, spatial: Sequence[int]) -> tuple[list[int], list[int]]:
        """The window and the stride per axis, checked against the input's size."""
        window = fit_sizes(self.window, spatial, "window")
        stride = fit_sizes(self.stride, spatial, "stride")
        for axis, (size, w, s) in enumerate(zip(spatial, window, stride)):
            if w > size:
                raise ShapeError(
                    f"window: expected at most the input's size {tuple(spatial)} along "
                    f"every axis, got {tuple(window)} (axis {axis}); choose a smaller window",
                    tuple(spatial),
                )
            if s > w and w < size:
                raise InvalidArgumentError(
                    f"stride: expected at most the window {tuple(window)} along every axis "
                    f"the window does not span (else some pixels are never covered), got "
                    f"{tuple(stride)}; choose stride <= window"
                )
        return window, stride

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        check_input(x, finite=False)
        window, stride = self._geometry(x.shape[2:])
        with deferred_checks():  # every check of the call read once, at its end
            check_finite_input(x)
            return self._occlude(x.detach(), target, window, stride)

    def _occlude(
        self, x: torch.Tensor, target: ResolvedTarget, window: list[int], stride: list[int]
    ) -> Explanation:
        """Each window's drop of the score; ``K`` classes per sample are scored from the
        same passes, each class's map normalised on its own."""
        batch, spatial = x.shape[0], x.shape[2:]
        k = classes_per_sample(target)
        # the maps' dtype, as every map's: float32 for 16-bit inputs, else the input's
        dtype = torch.promote_types(x.dtype, torch.float32)
        rows = [
            window_rows(size, w, s, x.device, dtype) for size, w, s in zip(spatial, window, stride)
        ]
        counts = [r.shape[0] for r in rows]
        covered = baseline_like(self.baseline, x)
        # the image itself, a copy for the model (a forward may write its input)
        reference, classes = forward_scores(self.model, x.clone(), target)
        fixed = target  # given classes as they are (an int stays a host int)
        if isinstance(target, ClassTarget) and target.classes is None:
            fixed = ClassTarget(classes)  # the class predicted for x, for every copy
        positions = math.prod(counts)
        drops = []
        for start, stop, repeated in _chunks(positions, batch, self.batch_size, fixed):
            inside = _windows(rows, counts, start, stop)  # (k, *spatial)
            inside = inside.view(stop - start, 1, 1, *spatial)
            occluded = torch.where(inside > 0, covered, x).flatten(0, 1)
            scores, _ = forward_scores(self.model, occluded, repeated)
            # (positions of the run, N, K): K = 1 for one class per sample
            scores = scores.view(stop - start, batch, -1).to(dtype)
            drops.append(reference.view(batch, -1).to(dtype) - scores)
        table = torch.cat(drops)  # (positions, N, K)
        check_finite_scores(self.model, x, table.sum(dim=(0, 2)))
        flat = table.permute(1, 2, 0).reshape(batch * max(k, 1), *counts)
        raw = _spread(flat, rows)  # (N * K, *spatial)
        explanation = build_explanation(spatial, classes, raw=raw[:, None])
        return per_class(explanation, k) if k else explanation

    def __repr__(self) -> str:
        name = type(self.model).__name__
        return f"Occlusion({name}, window={self.window}, stride={self.stride})"


def _windows(rows: list[torch.Tensor], counts: list[int], start: int, stop: int) -> torch.Tensor:
    """The windows of positions ``start`` to ``stop`` (row-major over the positions of
    each axis) as 0/1 maps ``(stop - start, *spatial)``: products of one row per axis."""
    index = torch.arange(start, stop, device=rows[0].device)
    inside: torch.Tensor | None = None
    for axis, (row, count) in enumerate(zip(rows, counts)):
        step = math.prod(counts[axis + 1 :])
        chosen = row[(index // step) % count]  # (k, size of the axis)
        shape = [len(index)] + [1] * len(rows)
        shape[1 + axis] = row.shape[1]
        chosen = chosen.view(shape)
        inside = chosen if inside is None else inside * chosen
    assert inside is not None
    return inside


def _spread(drops: torch.Tensor, rows: list[torch.Tensor]) -> torch.Tensor:
    """Each pixel's mean of the drops ``(N, *positions)`` of the windows that cover it,
    ``(N, *spatial)``: the sum over windows is separable, one product per axis with its
    rows, and so is the number of windows that cover a pixel."""
    total = drops
    coverage = torch.ones((), dtype=drops.dtype, device=drops.device)
    for axis, row in enumerate(rows):
        total = (total.movedim(1 + axis, -1) @ row).movedim(-1, 1 + axis)
        shape = [1] * len(rows)
        shape[axis] = row.shape[1]
        coverage = coverage * row.sum(dim=0).view(shape)
    return total / coverage
