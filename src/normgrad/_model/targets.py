"""The ``target`` argument, resolved once into class indices or a score function."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._transfer import to_device
from .outputs import read_logits as read_logits  # deletion and insertion read it here

Target = Union[None, int, Sequence[int], torch.Tensor, np.ndarray, Callable[[Any], torch.Tensor]]
"""What to explain: ``None`` (the predicted class), a class index for every sample (an int,
numpy integers too), per-sample class indices ``(N,)`` (an int tensor, an int numpy array or
a sequence of ints), several classes per sample ``(N, K)`` (an int tensor or numpy array:
multi-label, maps ``(N, K, *spatial)`` from one forward pass), or a callable mapping the
model output to one differentiable float score per sample (a tensor ``(N,)``), e.g. for
regression or segmentation (see [`SegmentationTarget`][normgrad.SegmentationTarget]). The callable
always sees the output of the caller's batch of N samples, also in methods that run the
model on several copies of it at once (SmoothGrad, Integrated Gradients). Classes are read
from the logits: the output tensor, its ``logits`` attribute or key, or a tuple's first item.

A model with a single logit ``(N, 1)`` is read as a binary classifier whose logit is the
log-odds of class 1: the predicted class is 1 where the logit is > 0, else 0; class 1 is
explained by ``+logit`` and class 0 by ``-logit`` (the log-odds of class 0), so
``target=0`` and ``target=1`` are both valid. NormGrad, a norm, gives the same map for
both; Grad-CAM does not."""

_EXPECTED = "expected None, an int, an int tensor or numpy array (N,) or (N, K), or a callable"


@dataclass(frozen=True)
class ClassTarget:
    """Explain the raw logit of a class: ``classes`` is a 0-d tensor (one class for every
    sample), a tensor ``(N,)`` (one per sample), or ``None`` (the predicted class)."""

    classes: torch.Tensor | None = None
    index: int | None = None
    """The class as a host int when the target was one: no copy to the device, no read."""

    def repeat(self, times: int, batch: int, seen: Lengths | None = None) -> ClassTarget:
        """The target of a batch of ``batch`` samples repeated ``times`` along its first
        dimension."""
        if self.classes is None or self.classes.ndim == 0:
            return self
        return ClassTarget(self.classes.repeat(times, *[1] * (self.classes.ndim - 1)))

    def fixed(self, classes: torch.Tensor | None) -> ResolvedTarget:
        """This target with the classes a pass explained, for a second pass on the same
        batch (so ``None`` cannot resolve to another class the second time)."""
        return ClassTarget(classes) if classes is not None else self

    @property
    def argument(self) -> Target:
        """This target as the ``target`` argument of an explainer."""
        return self.index if self.index is not None else self.classes


@dataclass(frozen=True)
class ScoreTarget:
    """Explain the scores ``score(output)`` ``(N,)`` computed by a callable."""

    score: Callable[[Any], torch.Tensor]

    def repeat(self, times: int, batch: int, seen: Lengths | None = None) -> ScoreTarget:
        """The target of a batch of ``batch`` samples repeated ``times``: the callable is
        called on each copy's part of the output (``batch`` samples, as its author wrote it
        for). ``seen``: the lengths of the output's tensors for the batch alone, recorded
        by the first call with ``times == 1`` and read by the others (see ``_split``)."""
        if times == 1 and seen is None:
            return self
        return ScoreTarget(PerCopy(self.score, times, batch, seen))

    def fixed(self, classes: torch.Tensor | None) -> ResolvedTarget:
        return self

    @property
    def argument(self) -> Target:
        return self.score


ResolvedTarget = Union[ClassTarget, ScoreTarget]


Lengths = dict[tuple[Any, ...], int]
"""The first dimension of each tensor of a model output (by its path of keys and indices)."""


def _record(output: Any, seen: Lengths, path: tuple[Any, ...] = ()) -> None:
    """Record in ``seen`` the first dimension of every tensor of ``output``."""
    if isinstance(output, torch.Tensor):
        seen[path] = output.shape[0] if output.ndim > 0 else -1
    elif isinstance(output, (list, tuple)):
        for i, value in enumerate(output):
            _record(value, seen, (*path, i))
    elif isinstance(output, dict):
        for key, value in output.items():
            _record(value, seen, (*path, key))


def _split(
    output: Any,
    times: int,
    total: int,
    top: bool = True,
    seen: Lengths | None = None,
    path: tuple[Any, ...] = (),
) -> list[Any]:
    """The model output of ``times`` stacked copies of a batch (``total`` samples in all),
    cut into one per copy.

    Tensors whose first dimension is ``total`` are cut along it, also inside tuples, lists
    and dicts; every other value inside them (a 0-d loss, a tensor that is not per sample,
    anything else) is the same for every copy. Each copy keeps the output's types: a named
    tuple, an ``OrderedDict``, a HuggingFace ``ModelOutput`` (its attributes too).

    With ``seen``, the lengths of the output's tensors for the batch alone (one copy), a
    tensor of ``total`` rows is cut only if it had one row per sample there too: a table
    whose length does not follow the batch (a class-weight buffer of ``total`` rows) is the
    same for every copy. A tensor ``seen`` does not hold is read by its length alone.
    """
    if isinstance(output, torch.Tensor):
        alone = total // times
        if (
            output.ndim > 0
            and output.shape[0] == total
            and (seen is None or seen.get(path, alone) == alone)
        ):
            return list(output.chunk(times))
        if not top:
            return [output] * times
        raise ShapeError(
            f"model output: expected {times} copies of the batch ({total} samples) along the "
            f"first dimension, got shape {tuple(output.shape)}",
            output.shape,
        )
    if isinstance(output, (list, tuple)):
        parts = [_split(o, times, total, False, seen, (*path, i)) for i, o in enumerate(output)]
        copies = [[p[i] for p in parts] for i in range(times)]
        if hasattr(output, "_fields"):  # a named tuple
            return [type(output)(*c) for c in copies]
        return [type(output)(c) for c in copies]
    if isinstance(output, dict):
        split = {k: _split(v, times, total, False, seen, (*path, k)) for k, v in output.items()}
        return [_rebuilt(output, {k: v[i] for k, v in split.items()}) for i in range(times)]
    if not top:
        return [output] * times
    raise ArgumentTypeError(
        f"target: a callable target is called on the output of each copy of the batch, and "
        f"an output of type {type(output).__name__} cannot be split into copies; return a "
        "tensor, or a tuple, list or dict of tensors, from the model"
    )


_MISSING = object()


def _stale(part: object, key: object, value: object) -> bool:
    """Whether ``part`` holds an instance attribute ``key`` that is not ``value`` (an
    attribute of the class, a method say, is not the field's)."""
    if not isinstance(key, str):
        return False
    current = getattr(part, "__dict__", {}).get(key, _MISSING)
    return current is not _MISSING and current is not value


def _rebuilt(output: dict[Any, Any], values: dict[Any, Any]) -> dict[Any, Any]:
    """A shallow copy of the mapping ``output``, of its own type, holding ``values``.

    A HuggingFace ``ModelOutput`` keeps each field as an item and as an attribute; both are
    set, and a copy whose attribute still shows the whole batch raises instead of handing
    the callable a part that reads both ways."""
    if type(output) is dict:
        return dict(values)
    try:
        part = copy.copy(output)
        for key, value in values.items():
            part[key] = value
            if _stale(part, key, value):
                setattr(part, key, value)
    except Exception as error:  # any failure of a foreign type's copy protocol
        raise ArgumentTypeError(
            f"target: a callable target is called on the output of each copy of the batch, "
            f"and the output of type {type(output).__name__} could not be copied with each "
            f"copy's values ({error}); return a tensor, or a tuple, list or dict of tensors"
        ) from error
    stale = [k for k, v in values.items() if _stale(part, k, v)]
    if stale:
        raise ArgumentTypeError(
            f"target: a callable target is called on the output of each copy of the batch, "
            f"and a copy of the output of type {type(output).__name__} still shows the whole "
            f"batch in its attribute(s) {stale}; return a tensor, or a tuple, list or dict"
        )
    return part


@dataclass(frozen=True)
class PerCopy:
    """A score callable written for a batch of ``batch`` samples, applied to ``times``
    stacked copies of that batch: called on each copy's output, the scores concatenated.
    With ``seen`` and one copy, the lengths of the output's tensors are recorded in it;
    with several, they tell which tensors are per sample (``_split``)."""

    score: Callable[[Any], torch.Tensor]
    times: int
    batch: int
    seen: Lengths | None = None

    def __call__(self, output: Any) -> torch.Tensor:
        if self.times == 1:
            if self.seen is not None:
                _record(output, self.seen)
            return self.score(output)
        scores = []
        for part in _split(output, self.times, self.times * self.batch, True, self.seen):
            value = self.score(part)
            check_scores(value, part, self.batch)
            scores.append(value)
        return torch.cat(scores)


def _any_requires_grad(output: Any) -> bool:
    if isinstance(output, torch.Tensor):
        return output.requires_grad
    if isinstance(output, (list, tuple)):
        return any(_any_requires_grad(o) for o in output)
    if isinstance(output, dict):
        return any(_any_requires_grad(o) for o in output.values())
    return False


def check_scores(scores: object, output: Any, batch: int) -> torch.Tensor:
    """The scores a callable target returned: a float tensor ``(batch,)`` that the
    autograd graph connects to the model output (when the output has one)."""
    if not isinstance(scores, torch.Tensor) or scores.shape != (batch,):
        raise ShapeError(
            f"target: expected the callable to return one score per sample, a tensor "
            f"of shape ({batch},), got {describe(scores)}",
            getattr(scores, "shape", None),
        )
    if not scores.is_floating_point():
        raise ArgumentTypeError(
            f"target: the callable returned scores of dtype {scores.dtype}; expected float "
            "scores computed from the model output (a class index or an argmax has no "
            "gradient): return e.g. output[:, k], not output.argmax(1)"
        )
    if not scores.requires_grad and _any_requires_grad(output):
        raise InvalidArgumentError(
            "target: the callable's scores are detached from the model output (no autograd "
            "graph: .detach(), .item(), torch.no_grad() or a numpy round trip inside it); "
            "return scores computed from the output with differentiable torch operations"
        )
    return scores


def resolve_target(target: Target) -> ResolvedTarget:
    """Check what ``target`` is, once per call, before any forward pass is spent on it.

    The one resolution of a call: an explainer's ``explain`` and ``explain_shared`` make it
    at their entry, and hand the resolved value on; the passes take nothing else (see
    ``require_resolved``)."""
    if target is None:
        return ClassTarget()
    if callable(target):
        return ScoreTarget(target)
    if isinstance(target, (bool, np.bool_)):
        raise ArgumentTypeError(f"target: {_EXPECTED}, got {describe(target)}")
    if isinstance(target, numbers.Integral):
        if target < 0:
            raise InvalidArgumentError(f"target: expected a class index >= 0, got {target}")
        return ClassTarget(torch.tensor(int(target)), int(target))
    if isinstance(target, np.ndarray):
        if not np.issubdtype(target.dtype, np.integer):
            raise ArgumentTypeError(
                f"target: expected an integer array of class indices, got dtype {target.dtype}"
            )
        return ClassTarget(torch.from_numpy(np.array(target, dtype=np.int64)))
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ArgumentTypeError(
                f"target: expected an integer tensor of class indices, got dtype {target.dtype}"
            )
        return ClassTarget(target.detach().long())
    if isinstance(target, Sequence) and all(
        isinstance(t, numbers.Integral) and not isinstance(t, (bool, np.bool_)) for t in target
    ):
        return ClassTarget(torch.tensor([int(t) for t in target], dtype=torch.long))
    raise ArgumentTypeError(f"target: {_EXPECTED}, got {describe(target)}")


def require_resolved(target: object, where: str) -> ResolvedTarget:
    """``target`` itself, a value ``resolve_target`` made; anything else is a bug of the
    caller (the target is resolved once, at the entry of a call), said as such."""
    if not isinstance(target, (ClassTarget, ScoreTarget)):
        raise TypeError(
            f"{where}: expected a target resolved by resolve_target (ClassTarget or "
            f"ScoreTarget), got {describe(target)}; resolve the target argument once, where "
            "the call begins"
        )
    return target


def _logits(output: Any, batch: int) -> torch.Tensor:
    logits = read_logits(output)  # the one rule: see outputs.py
    if logits.ndim != 2 or logits.shape[0] != batch:
        raise ShapeError(
            f"model output: expected logits of shape ({batch}, num_classes) to pick a class "
            f"from, got {describe(logits)}; pass target=callable(output) -> scores (N,) to "
            f"explain other outputs",
            logits.shape,
        )
    return logits


def check_class_shape(target: ClassTarget, batch: int) -> None:
    """Raise unless the classes are one for all samples, one per sample of ``batch`` or
    ``K`` per sample ``(batch, K)`` (several classes at once, see ``capture``)."""
    classes = target.classes
    if (
        classes is not None
        and classes.ndim != 0
        and not (classes.ndim in (1, 2) and classes.shape[0] == batch and classes.numel())
    ):
        raise ShapeError(
            f"target: expected an int, one class index per sample (shape ({batch},)) or K "
            f"per sample (shape ({batch}, K), K >= 1), got shape {tuple(classes.shape)}",
            classes.shape,
        )


def target_classes(output: Any, target: ClassTarget, batch: int) -> torch.Tensor:
    """The class index ``(N,)`` explained for each sample, checked against the logits."""
    logits = _logits(output, batch)
    num_classes = logits.shape[1]
    if num_classes == 1:  # one logit: the log-odds of class 1 (see Target)
        num_classes = 2
        if target.classes is None:
            return (logits.detach()[:, 0] > 0).long()
    if target.classes is None:
        return logits.detach().argmax(dim=1)
    check_class_shape(target, batch)
    if target.index is not None:  # an int: checked on the host, no copy
        if target.index >= num_classes:
            _class_range_error(num_classes, logits.shape[1], [target.index])
        return torch.full((batch,), target.index, dtype=torch.long, device=logits.device)
    given = to_device(target.classes, logits.device)
    given = given.expand(batch) if given.ndim == 0 else given
    # a fresh tensor (the caller's may be an inference tensor or an int broadcast), in range
    # until the check is read, so that no kernel indexes outside the logits
    classes = given.clamp(0, num_classes - 1)
    bad = classes != given
    outputs = logits.shape[1]

    def action(flags: list[float]) -> None:
        if any(flags):
            wrong = [c for c, b in zip(given.flatten().tolist(), flags) if b]
            _class_range_error(num_classes, outputs, wrong)

    with deferred_checks() as checks:  # read at the end of the call
        checks.add(bad, action)
    return classes


def _class_range_error(num_classes: int, outputs: int, wrong: list[int]) -> None:
    raise InvalidArgumentError(
        f"target: expected class indices in [0, {num_classes}) for a model with "
        f"{outputs} output(s)"
        + (" (a single logit: class 0 or 1)" if outputs == 1 else "")
        + f", got {sorted(set(wrong))}"
    )


def target_scores(
    output: Any, target: ResolvedTarget, batch: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-sample scores ``(N,)`` to differentiate and the class indices (or None).

    The score of a class is its raw logit: not a softmax probability, not a loss. For a
    single-logit model, class 1 is scored by ``+logit`` and class 0 by ``-logit``.
    """
    if isinstance(target, ScoreTarget):
        return check_scores(target.score(output), output, batch), None
    classes = target_classes(output, target, batch)
    logits = _logits(output, batch)
    index = target.index
    if logits.shape[1] == 1:
        if index is not None:  # the sign known on the host
            return (logits[:, 0] if index == 1 else -logits[:, 0]), classes
        sign = (2 * classes - 1).to(logits.dtype)
        return sign * logits[:, 0], classes
    if index is not None:
        return logits[:, index], classes
    return logits.gather(1, classes.unsqueeze(1)).squeeze(1), classes
