"""The ``target`` argument, resolved once into class indices or a score function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch

from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe

Target = Union[None, int, Sequence[int], torch.Tensor, Callable[[Any], torch.Tensor]]
"""What to explain: ``None`` (the predicted class), a class index for every sample, a
per-sample int tensor ``(N,)`` of class indices, or a callable mapping the model output to
one scalar score per sample (a tensor ``(N,)``), e.g. for regression or segmentation."""

_EXPECTED = "expected None, an int, an int tensor (N,) or a callable"


@dataclass(frozen=True)
class ClassTarget:
    """Explain the raw logit of a class: ``classes`` is a 0-d tensor (one class for every
    sample), a tensor ``(N,)`` (one per sample), or ``None`` (the predicted class)."""

    classes: torch.Tensor | None = None

    def repeat(self, times: int) -> ClassTarget:
        """The target of the batch repeated ``times`` along its first dimension."""
        if self.classes is None or self.classes.ndim == 0:
            return self
        return ClassTarget(self.classes.repeat(times))

    def fixed(self, classes: torch.Tensor | None) -> ResolvedTarget:
        """This target with the classes a pass explained, for a second pass on the same
        batch (so ``None`` cannot resolve to another class the second time)."""
        return ClassTarget(classes) if classes is not None else self

    @property
    def argument(self) -> Target:
        """This target as the ``target`` argument of an explainer."""
        return self.classes


@dataclass(frozen=True)
class ScoreTarget:
    """Explain the scores ``score(output)`` ``(N,)`` computed by a callable."""

    score: Callable[[Any], torch.Tensor]

    def repeat(self, times: int) -> ScoreTarget:
        return self

    def fixed(self, classes: torch.Tensor | None) -> ResolvedTarget:
        return self

    @property
    def argument(self) -> Target:
        return self.score


ResolvedTarget = Union[ClassTarget, ScoreTarget]


def resolve_target(target: Target | ResolvedTarget) -> ResolvedTarget:
    """Check what ``target`` is, once, before any forward pass is spent on it."""
    if isinstance(target, (ClassTarget, ScoreTarget)):
        return target
    if target is None:
        return ClassTarget()
    if callable(target):
        return ScoreTarget(target)
    if isinstance(target, bool):
        raise ArgumentTypeError(f"target: {_EXPECTED}, got {describe(target)}")
    if isinstance(target, int):
        if target < 0:
            raise InvalidArgumentError(f"target: expected a class index >= 0, got {target}")
        return ClassTarget(torch.tensor(target))
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ArgumentTypeError(
                f"target: expected an integer tensor of class indices, got dtype {target.dtype}"
            )
        return ClassTarget(target.detach().long())
    if isinstance(target, Sequence) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in target
    ):
        return ClassTarget(torch.tensor(list(target), dtype=torch.long))
    raise ArgumentTypeError(f"target: {_EXPECTED}, got {describe(target)}")


def _logits(output: Any, batch: int) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != batch:
        raise ShapeError(
            f"model output: expected logits of shape ({batch}, num_classes) to pick a class "
            f"from, got {describe(output)}; pass target=callable(output) -> scores (N,) to "
            f"explain other outputs",
            getattr(output, "shape", None),
        )
    return output


def check_class_shape(target: ClassTarget, batch: int) -> None:
    """Raise unless the classes are one for all samples or one per sample of ``batch``."""
    classes = target.classes
    if classes is not None and classes.ndim != 0 and tuple(classes.shape) != (batch,):
        raise ShapeError(
            f"target: expected an int, or one class index per sample (shape ({batch},)), "
            f"got shape {tuple(classes.shape)}",
            classes.shape,
        )


def target_classes(output: Any, target: ClassTarget, batch: int) -> torch.Tensor:
    """The class index ``(N,)`` explained for each sample, checked against the logits."""
    logits = _logits(output, batch)
    num_classes = logits.shape[1]
    if target.classes is None:
        return logits.detach().argmax(dim=1)
    check_class_shape(target, batch)
    classes = target.classes.to(logits.device)
    # a fresh tensor (the caller's may be an inference tensor or an int broadcast)
    classes = classes.expand(batch).clone() if classes.ndim == 0 else classes.clone()
    bad = (classes < 0) | (classes >= num_classes)
    if bool(bad.any()):
        raise InvalidArgumentError(
            f"target: expected class indices in [0, {num_classes}) for a model with "
            f"{num_classes} outputs, got {sorted(set(classes[bad].tolist()))}"
        )
    return classes


def target_scores(
    output: Any, target: ResolvedTarget, batch: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-sample scores ``(N,)`` to differentiate and the class indices (or None).

    The score of a class is its raw logit: not a softmax probability, not a loss.
    """
    if isinstance(target, ScoreTarget):
        scores = target.score(output)
        if not isinstance(scores, torch.Tensor) or scores.shape != (batch,):
            raise ShapeError(
                f"target: expected the callable to return one score per sample, a tensor "
                f"of shape ({batch},), got {describe(scores)}",
                getattr(scores, "shape", None),
            )
        return scores, None
    classes = target_classes(output, target, batch)
    return _logits(output, batch).gather(1, classes.unsqueeze(1)).squeeze(1), classes
