r"""The target's scores from a forward pass without a graph: the pass of the perturbation
methods (Occlusion, RISE), which read scores, not gradients."""

from __future__ import annotations

import torch
from torch import nn

from .diagnosis import forward
from .hooks import explaining
from .per_class import class_scores
from .targets import ResolvedTarget, _logits, require_resolved


def forward_scores(
    model: nn.Module, x: torch.Tensor, target: ResolvedTarget, *, probability: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""The target's score of each sample of ``x`` ``(N,)`` from one forward pass in eval
    mode without a graph, and the classes scored ``(N,)`` (``None`` for a score function);
    for ``K`` classes per sample ``(N, K)``, every class's score from the same pass,
    ``(N, K)``, and the classes ``(N, K)``.

    A class is scored by its logit, as every explainer reads it, or with ``probability`` by
    its softmax probability (a single logit $z$: $\sigma(z)$ for class 1, $\sigma(-z)$ for
    class 0); a score function's scores are used as they are. ``x`` is handed to the
    model as it is: pass a copy where the caller's tensor must not be written (a forward
    that normalises its input in place). Calls on one model are serialised and every
    module's training flag restored (``explaining``). Non-finite scores are the caller's
    to check, once for all its passes (``diagnosis.check_finite_scores``)."""
    resolved = require_resolved(target, "forward_scores")
    with explaining(model), torch.no_grad():
        output = forward(model, x)
        scores, classes = class_scores(output, resolved, x.shape[0])
        if probability and classes is not None:
            logits = _logits(output, x.shape[0])  # read as the scores were read
            total = logits.logsumexp(dim=1) if logits.shape[1] > 1 else None
            if scores.ndim == 1:
                scores = _probability(scores, total)
            else:  # each class's column as one class's scores: the same values, bit for bit
                columns = [_probability(c.contiguous(), total) for c in scores.unbind(dim=1)]
                scores = torch.stack(columns, dim=1)
    return scores, classes


def _probability(scores: torch.Tensor, total: torch.Tensor | None) -> torch.Tensor:
    """Softmax probabilities from the class's logits ``(N,)`` and each row's log-sum-exp;
    without one (a single logit), the scores are +z for class 1 and -z for class 0."""
    return torch.sigmoid(scores) if total is None else (scores - total).exp()
