"""Many explainers of one batch from shared passes: [`explain_shared`][normgrad.explain_shared]."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, describe
from .._model.targets import Target, resolve_target
from .base import Explainer, Explanation, PassNeeds, assemble, explain_resolved, run_passes


def explain_shared(
    explainers: Sequence[Explainer], x: torch.Tensor, target: Target = None
) -> list[Explanation]:
    """Explain ``x`` with several explainers, sharing the passes they have in common.

    The explainers of one model share one forward pass (the union of their layers hooked)
    and at most two backward passes: the plain one serves every NormGrad variant (single
    and multi-layer, any VIL), Grad-CAM, Gradient and Input x Gradient (the input
    gradient taken if any of them needs it); the guided one (ReLUs guided, from the same
    forward pass) serves Guided Backpropagation and Guided Grad-CAM, whose Grad-CAM factor
    comes from the plain one. The target is resolved once for all (``None``: the classes
    each model predicts, from its one forward pass). SmoothGrad, Integrated Gradients,
    Occlusion, RISE and the centre map run their own passes. The results equal calling
    each explainer on its own.

    Args:
        explainers: any normgrad explainers, of one model or several.
        x: the batch ``(N, C, *spatial)``.
        target: as for each explainer; one target for all.

    Returns:
        One [`Explanation`][normgrad.Explanation] per explainer, in order.

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> methods = [normgrad.NormGrad(model, "layer4.1", "conv1x1"),
        ...            normgrad.GradCAM(model, "layer4.1"),
        ...            normgrad.GuidedBackprop(model)]
        >>> results = normgrad.explain_shared(methods, torch.randn(1, 3, 64, 64))
        >>> len(results), tuple(results[2].saliency.shape)
        (3, (1, 1, 64, 64))
    """
    if isinstance(explainers, Mapping):
        raise ArgumentTypeError(
            f"explainers: expected a sequence of explainers, got a dict of {len(explainers)} "
            "(name -> explainer, as presets and evaluate take them); pass "
            "list(explainers.values()) (the results come back in that order)"
        )
    resolved = resolve_target(target)  # the call's one resolution, before any pass
    groups: dict[int, list[tuple[int, Explainer, PassNeeds]]] = {}
    results: dict[int, Explanation] = {}
    for i, e in enumerate(explainers):
        if not isinstance(e, Explainer):
            raise ArgumentTypeError(
                f"explainers[{i}]: expected a normgrad explainer, got {describe(e)}"
            )
    for i, e in enumerate(explainers):
        needs = e._needs()
        if needs is None:
            continue
        e._check(x)
        groups.setdefault(id(e.model), []).append((i, e, needs))
    with deferred_checks():  # every check of the call read once, at its end
        for group in groups.values():
            model = group[0][1].model
            passes = run_passes(model, x, [needs for _, _, needs in group], resolved)
            for i, e, _ in group:
                results[i] = assemble(e, x, passes)
        for i, e in enumerate(explainers):
            if i not in results:
                results[i] = explain_resolved(e, x, resolved)
    return [results[i] for i in range(len(explainers))]
