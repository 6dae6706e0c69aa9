r"""A target for segmentation networks: one class's score over a region of its pixels."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._transfer import to_device
from .outputs import logits_of

_REDUCTIONS = ("sum", "mean")


def segmentation_logits(output: Any) -> torch.Tensor:
    """The per-pixel logits ``(N, classes, *spatial)`` of a segmentation network's output:
    the ``"out"`` entry of a mapping (torchvision's FCN and DeepLabV3), else the logits by
    the rule of every model output (a tensor, a ``logits`` attribute or key, a tuple's
    first element: see ``outputs.py``)."""
    if isinstance(output, Mapping) and "out" in output:
        output = output["out"]
    logits = logits_of(output)
    if not isinstance(logits, torch.Tensor) or logits.ndim < 3:
        raise ShapeError(
            "target: SegmentationTarget expected the model to output per-pixel logits "
            "(N, classes, *spatial), a mapping with 'out' or 'logits', or a tuple whose "
            f"first element is them; got {describe(output)}",
            getattr(logits, "shape", None),
        )
    return logits


class SegmentationTarget:
    r"""Explain a segmentation network's class over a region: one score per sample.

    $$
    s_n = \sum_{u} m_{n,u} \, y_{n,k,u}
    \quad\text{or}\quad
    s_n = \frac{\sum_u m_{n,u} \, y_{n,k,u}}{\sum_u m_{n,u}}
    $$

    with $y_{n,k,u}$ the raw logit of class $k$ at pixel (voxel) $u$ and $m$ the region:
    ``mask`` when given (its weights), else the pixels predicted as class $k$
    ($m_{n,u} = [\arg\max_c y_{n,c,u} = k]$, not differentiated). This is the score of
    Seg-Grad-CAM (Vinogradova et al., AAAI 2020), usable by every explainer (pass it as
    ``target``) and as the labels of ``evaluate``; 2-D and 3-D alike.

    A single-channel output ``(N, 1, *spatial)`` is read as binary, as a single-logit
    classifier is (see [`Target`][normgrad.Target]): class 1 is scored by $+y$ and
    class 0 by $-y$, and the pixels predicted as class 1 are those with $y > 0$.

    The default ``reduction="sum"`` is Seg-Grad-CAM's. Every normgrad saliency map is
    min-max normalised per sample, so a positive factor of the score changes no
    ``saliency``: ``"sum"`` and ``"mean"`` differ only in the raw maps and attributions
    (``"mean"`` divides them by the region's size, comparable across regions of
    different sizes). An empty region scores 0 either way: no gradient reaches any layer
    and normgrad warns that the gradient is zero for that sample.

    Args:
        class_index: the class to explain, an int >= 0 (for every sample).
        mask: ``None`` (the pixels predicted as the class), or the region, a bool or
            float tensor ``(N, *spatial)`` or ``(*spatial)`` (one for every sample) at the
            output's resolution; a float mask weighs each pixel's logit.
        reduction: ``"sum"`` or ``"mean"`` over the region.

    Shape:
        - model output: ``(N, classes, *spatial)`` logits, or ``{"out": ...}``.
        - returns: scores ``(N,)``, differentiable with respect to the output.

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.segmentation.fcn_resnet50(
        ...     weights=None, weights_backbone=None, num_classes=3)
        >>> target = normgrad.SegmentationTarget(1)
        >>> explainer = normgrad.GradCAM(model, "backbone.layer4")
        >>> explainer(torch.randn(1, 3, 32, 32), target).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(
        self,
        class_index: int,
        mask: torch.Tensor | np.ndarray | None = None,
        reduction: str = "sum",
    ) -> None:
        if isinstance(class_index, (bool, np.bool_)) or not isinstance(
            class_index, numbers.Integral
        ):
            raise ArgumentTypeError(
                f"class_index: expected an int >= 0, got {describe(class_index)}"
            )
        if class_index < 0:
            raise InvalidArgumentError(f"class_index: expected an int >= 0, got {class_index}")
        if reduction not in _REDUCTIONS:
            raise InvalidArgumentError(f"reduction: expected 'sum' or 'mean', got {reduction!r}")
        self.class_index: int = int(class_index)
        self.mask: torch.Tensor | None = _checked_mask(mask)
        self.reduction: str = reduction
        self._placed: dict[torch.device, torch.Tensor] = {}
        """The mask on each device it was used on: copied once, not on every call."""

    def __call__(self, output: Any) -> torch.Tensor:
        """The score of each sample ``(N,)`` for the model's ``output``."""
        logits = segmentation_logits(output)
        channels, k = logits.shape[1], self.class_index
        if k >= max(channels, 2):
            raise InvalidArgumentError(
                f"class_index: expected a class in [0, {max(channels, 2)}) for a model "
                f"output of {channels} channel(s), got {k}"
            )
        if channels == 1:  # binary: class 1 by +logit, class 0 by -logit
            scores = logits[:, 0] if k == 1 else -logits[:, 0]
            predicted = scores.detach() > 0
        else:
            scores = logits[:, k]
            predicted = logits.detach().argmax(dim=1) == k
        region = predicted if self.mask is None else self._mask_for(scores)
        weights = region.to(scores.dtype)
        dims = tuple(range(1, scores.ndim))
        total = (scores * weights).sum(dim=dims)
        if self.reduction == "sum":
            return total
        size = weights.sum(dim=dims)
        # an empty region scores 0 (its sum is 0), with a zero gradient, not 0 / 0
        return total / torch.where(size > 0, size, torch.ones_like(size))

    def _mask_for(self, scores: torch.Tensor) -> torch.Tensor:
        """The mask on the scores' device, checked against their shape ``(N, *spatial)``."""
        assert self.mask is not None
        mask = self._placed.get(scores.device)
        if mask is None:
            mask = self._placed[scores.device] = to_device(self.mask, scores.device)
        spatial = tuple(scores.shape[1:])
        if tuple(mask.shape) not in (spatial, tuple(scores.shape)):
            raise ShapeError(
                f"mask: expected a region of the output's shape {tuple(scores.shape)} (N, "
                f"*spatial) or {spatial} (every sample), got shape {tuple(mask.shape)}; give "
                "the mask at the resolution of the model's output",
                mask.shape,
            )
        return mask.expand_as(scores)

    def __repr__(self) -> str:
        mask = "None" if self.mask is None else f"<mask {tuple(self.mask.shape)}>"
        return f"SegmentationTarget({self.class_index}, mask={mask}, reduction={self.reduction!r})"


def _checked_mask(mask: object) -> torch.Tensor | None:
    """``mask`` as a tensor (bool or float), or ``None``."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.array(mask))
    if not isinstance(mask, torch.Tensor):
        raise ArgumentTypeError(
            f"mask: expected None or a bool or float tensor (N, *spatial), got {describe(mask)}"
        )
    if not (mask.dtype == torch.bool or mask.is_floating_point()) or mask.ndim < 1:
        raise ArgumentTypeError(
            f"mask: expected a bool or float tensor (N, *spatial) or (*spatial), got "
            f"{describe(mask)}; convert a label map with (labels == class_index)"
        )
    return mask.detach()
