"""Several classes per sample at once: a target ``(N, K)`` explained from one forward pass.

The ``K`` scores of each sample are differentiated by one batched backward
(``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the backward pass) on
accelerators, and by a loop over the classes on the CPU (see ``batches_backward``) or
where an operation of the backward cannot be batched. The
gradients come back as ``N * K`` rows, sample-major (row ``n * K + k``: class ``k`` of
sample ``n``), so every explainer builds its maps as for a batch of ``N * K`` samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .outputs import read_logits
from .targets import ClassTarget, ResolvedTarget, target_classes, target_scores


def classes_per_sample(target: ResolvedTarget) -> int:
    """``K`` for a target of ``K`` classes per sample ``(N, K)``, else 0."""
    if isinstance(target, ClassTarget) and target.classes is not None:
        return target.classes.shape[1] if target.classes.ndim == 2 else 0
    return 0


def class_scores(
    output: Any, target: ResolvedTarget, batch: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The scores to differentiate, ``(N,)``, or ``(N, K)`` for ``K`` classes per sample
    (each class's raw logit, as ``target_scores`` reads one), and the classes."""
    if not classes_per_sample(target):
        return target_scores(output, target, batch)
    assert isinstance(target, ClassTarget)
    classes = target_classes(output, target, batch)  # the logits (N, num_classes) checked
    logits = read_logits(output)
    if logits.shape[1] == 1:  # one logit: class 1 scored by +logit, class 0 by -logit
        return (2 * classes - 1).to(logits.dtype) * logits[:, :1], classes
    return logits.gather(1, classes), classes


def batches_backward(device: torch.device) -> bool:
    """Whether the ``K`` classes' backward passes run as one batched backward on
    ``device``: on accelerators, where one pass over ``K * N`` rows fills the device better
    than ``K`` passes over ``N``; not on the CPU, where the batched backward is slower than
    the loop at realistic sizes (``benchmarks/multilabel.py``, ResNet-50, 224x224, batch 8,
    ``K = 5``, 2 threads: one forward and the batched backward to the input took 0.97 of
    five separate calls, with the loop 0.68; a tie at 112x112, batch 4), though faster on
    tiny inputs, where the time is small either way (32x32, batch 2: 0.48 against 0.62)."""
    return device.type != "cpu"


def differentiate(
    scores: torch.Tensor, inputs: Sequence[torch.Tensor], retain: bool
) -> list[torch.Tensor | None]:
    """The gradients of ``scores`` with respect to ``inputs``: of their sum for scores
    ``(N,)``; of each class's scores for scores ``(N, K)``, as ``N * K`` rows sample-major,
    by one batched backward where ``batches_backward`` says so and the backward can be
    batched, else by a loop over the classes."""
    if scores.ndim == 1:
        return list(
            torch.autograd.grad(scores.sum(), inputs, allow_unused=True, retain_graph=retain)
        )
    grads = _batched(scores, inputs) if batches_backward(scores.device) else None
    if grads is None:
        k = scores.shape[1]
        each = [
            torch.autograd.grad(
                scores[:, j].sum(), inputs, allow_unused=True, retain_graph=retain or j < k - 1
            )
            for j in range(k)
        ]
        grads = [None if g[0] is None else torch.stack(g) for g in zip(*each)]
    # (K, N, ...) -> (N * K, ...), row n * K + j the class j of sample n
    return [None if g is None else g.transpose(0, 1).flatten(0, 1) for g in grads]


def _batched(
    scores: torch.Tensor, inputs: Sequence[torch.Tensor]
) -> Sequence[torch.Tensor | None] | None:
    """Each class's gradients ``(K, N, ...)`` by one batched backward, keeping the graph;
    ``None`` where an operation of the backward cannot be batched."""
    k = scores.shape[1]
    seeds = torch.eye(k, dtype=scores.dtype, device=scores.device).unsqueeze(1)
    try:
        with warnings.catch_warnings():  # an op without a batching rule runs in a loop
            warnings.filterwarnings("ignore", message=".*performance drop.*")
            return torch.autograd.grad(
                [scores],
                inputs,
                [seeds.expand(k, *scores.shape)],
                allow_unused=True,
                retain_graph=True,  # kept for the loop, should this fail
                is_grads_batched=True,
            )
    except RuntimeError as error:
        if "checkpoint" in str(error):
            raise
        return None
