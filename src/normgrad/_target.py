"""Turning the ``target`` argument into one differentiable score per sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch

from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe

Target = Union[None, int, Sequence[int], torch.Tensor, Callable[[Any], torch.Tensor]]
"""What to explain: ``None`` (the predicted class), a class index for every sample, a
per-sample int tensor ``(N,)`` of class indices, or a callable mapping the model output to
one scalar score per sample (a tensor ``(N,)``), e.g. for regression or segmentation."""


_EXPECTED = "expected None, an int, an int tensor (N,) or a callable"


def check_target_type(target: object) -> None:
    """Reject a ``target`` of the wrong kind before any forward pass is spent on it."""
    if target is None or callable(target):
        return
    if isinstance(target, bool):
        raise ArgumentTypeError(f"target: {_EXPECTED}, got {describe(target)}")
    if isinstance(target, int):
        if target < 0:
            raise InvalidArgumentError(f"target: expected a class index >= 0, got {target}")
        return
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ArgumentTypeError(
                f"target: expected an integer tensor of class indices, got dtype {target.dtype}"
            )
        return
    if isinstance(target, Sequence) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in target
    ):
        return
    raise ArgumentTypeError(f"target: {_EXPECTED}, got {describe(target)}")


def target_scores(
    output: Any, target: Target, batch: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-sample scores ``(N,)`` to differentiate and the class indices used (or None).

    The score of a class is its raw logit: not a softmax probability, not a loss.
    """
    if callable(target) and not isinstance(target, torch.Tensor):
        scores = target(output)
        if not isinstance(scores, torch.Tensor) or scores.shape != (batch,):
            got = describe(scores)
            raise ShapeError(
                f"target: expected the callable to return one score per sample, a tensor "
                f"of shape ({batch},), got {got}",
                getattr(scores, "shape", None),
            )
        return scores, None
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != batch:
        raise ShapeError(
            f"model output: expected logits of shape ({batch}, num_classes) to pick a class "
            f"from, got {describe(output)}; pass target=callable(output) -> scores (N,) to "
            f"explain other outputs",
            getattr(output, "shape", None),
        )
    num_classes = output.shape[1]
    if target is None:
        classes = output.detach().argmax(dim=1)
    else:
        if isinstance(target, int):
            classes = torch.full((batch,), target, dtype=torch.long, device=output.device)
        else:
            classes = torch.as_tensor(target, device=output.device).long()
            if classes.ndim == 0:
                classes = classes.expand(batch)
            if classes.shape != (batch,):
                raise ShapeError(
                    f"target: expected an int, or one class index per sample (shape "
                    f"({batch},)), got shape {tuple(classes.shape)}",
                    classes.shape,
                )
        bad = (classes < 0) | (classes >= num_classes)
        if bool(bad.any()):
            raise InvalidArgumentError(
                f"target: expected class indices in [0, {num_classes}) for a model with "
                f"{num_classes} outputs, got {sorted(set(classes[bad].tolist()))}"
            )
    scores = output.gather(1, classes.unsqueeze(1)).squeeze(1)
    return scores, classes
