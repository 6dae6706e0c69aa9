"""The one forward and backward pass: layer activations and the target score's gradients.

This is the only place that registers forward hooks. Gradients come from
``torch.autograd.grad(score, captured activations)``: no weight gradient is computed,
``param.grad`` is never written, and backpropagation stops at the earliest captured tensor.
The forward pass records an autograd graph only from the first captured layer on, so the
layers below it cost no more than in inference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._checks import check_input
from .._deferred import deferred_checks
from .._errors import InvalidArgumentError, LayerError, describe
from .diagnosis import (
    check_finite_input,
    check_finite_scores,
    check_gradients,
    check_supported,
    checkpoint_backward_error,
    forward,
    inside_checkpoint,
    reentrant_layer_error,
    unguided_clamps_warning,
)
from .guided import GuidedReLUs
from .hooks import HookSet, explaining
from .layout_detection import resolve_layout
from .layout_trace import LayoutTrace
from .layouts import Layout, Resolved
from .targets import (
    ClassTarget,
    ResolvedTarget,
    require_resolved,
    target_classes,
    target_scores,
)


@dataclass(frozen=True)
class Capture:
    """What one explained forward/backward pass produced (tensors detached)."""

    classes: torch.Tensor | None
    """The class index explained for each sample ``(N,)``, or None for a score target."""
    activations: list[torch.Tensor]
    """One activation ``(N, C, *spatial)`` per requested layer, whatever its layout."""
    gradients: list[torch.Tensor]
    """The gradient of the score with respect to each activation."""
    input_gradient: torch.Tensor | None
    """The gradient with respect to the input, when it was asked for."""
    guided_gradient: torch.Tensor | None = None
    """The guided gradient with respect to the input (a guided pass only)."""
    guided_relus: int = 0
    """How many ReLU calls were guided (a guided pass only)."""


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    target: ResolvedTarget,
    *,
    layouts: Sequence[Layout] | None = None,
    input_gradient: bool = False,
    guided: bool = False,
) -> Capture:
    """Run ``model`` on ``x`` once in eval mode and differentiate the target score once.

    Args:
        model: the classifier.
        x: the batch ``(N, C, *spatial)``.
        layers: ``(name, module)`` pairs whose outputs are captured.
        target: the target, resolved once by ``resolve_target`` where the call began (see
            [`Target`][normgrad.Target]); nothing else is accepted.
        layouts: the stated layout of each layer's output (``None``: detect); every
            activation and gradient is returned as ``(N, C, *spatial)``.
        input_gradient: also return the gradient with respect to ``x``.
        guided: also return the guided gradient with respect to ``x`` (Guided
            Backpropagation), from the same forward pass: its ReLUs are wrapped so that a
            second backward, after the plain one, is guided. The target callable, if any,
            runs after the forward pass, unguided.

    The model is left as it was: hooks removed, training flags restored, no ``param.grad``
    written, also when an error is raised. ``x`` is never written: the model runs on a
    copy, so a forward that normalises its input in place changes only the copy. Calls on
    one model are serialised (see ``explaining``). A NaN or
    infinite score or gradient raises [`NonFiniteError`][normgrad.NonFiniteError].

    The checks of values (a finite input, classes in range, finite scores and gradients)
    are read once, with the calling explainer's, at the end of its call (see ``deferred``).
    """
    with deferred_checks():
        return _capture(model, x, layers, target, layouts, input_gradient, guided)


def _capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    target: ResolvedTarget,
    layouts: Sequence[Layout] | None,
    input_gradient: bool,
    guided: bool,
) -> Capture:
    check_input(x, finite=False)
    check_finite_input(x)
    resolved = require_resolved(target, "capture")
    if (
        isinstance(resolved, ClassTarget)
        and resolved.classes is not None
        and resolved.index is None
    ):
        # copied to the device now, while its queue is short (a copy from the host waits
        # for the queue to drain)
        resolved = ClassTarget(resolved.classes.to(x.device))
    if not layers and not input_gradient and not guided:
        raise InvalidArgumentError("layers: expected at least one layer to capture")
    check_supported(model, layers, guided)
    batch = x.shape[0]
    captured: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}
    stated = dict(zip((name for name, _ in layers), layouts or [None] * len(layers)))
    found: dict[str, Resolved] = {}

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layers: expected layer {name!r} to output a tensor (N, C, *spatial), "
                    f"got {describe(output)}"
                )
            if output.ndim < 3 or output.shape[0] != batch:
                raise LayerError(
                    f"layers: expected layer {name!r} to output a feature map or tokens of "
                    f"the batch of {batch}, got shape {tuple(output.shape)}; choose a block "
                    "whose output keeps the image's spatial layout"
                )
            if inside_checkpoint(reentrant_only=True):
                raise reentrant_layer_error(name)
            made = trace.layout(output) if trace is not None and name in traced else None
            found[name] = resolve_layout(output, x.shape[2:], stated[name], model, name, made)
            if trace is not None and name in traced:
                trace.leave()
            # From the first captured layer on, the forward records a graph (see below).
            torch.set_grad_enabled(True)
            leaf = output if output.requires_grad else output.detach().requires_grad_()
            captured[name].append(leaf)
            # Hand a copy downstream: an in-place op there (ReLU(inplace=True)) must not
            # change the tensor whose value and gradient are read here.
            return leaf.clone()

        return hook

    relus = GuidedReLUs() if guided else None
    # how the layers' outputs are made, where their layout is detected (an output with as
    # many channels as positions reads both ways)
    traced = {name for name, _ in layers if stated[name] is None}
    trace = LayoutTrace() if traced else None
    with explaining(model), HookSet() as hooks:
        if trace is not None:
            for handle in trace.watch(model, [m for n, m in layers if n in traced]):
                hooks.add(handle)
        for name, module in layers:
            hooks.add(module.register_forward_hook(make_hook(name)))
        differentiated = input_gradient or guided
        with torch.inference_mode(False):
            # the model gets a copy: an in-place op in its forward (x.sub_(mean)) must
            # change neither the caller's tensor nor the leaf differentiated against (an
            # alias of x, never written, unless x is an inference tensor)
            x_in = x.detach()
            if not differentiated or x_in.is_inference():
                x_in = x_in.clone()
            x_in.requires_grad_(differentiated)
        # Only the part of the forward pass after the first captured layer needs a graph:
        # nothing computed before it can carry gradient to it. Its hook switches grad mode
        # on; the context restores the mode on exit.
        with torch.set_grad_enabled(input_gradient or guided), relus or contextlib.nullcontext():
            try:
                output = forward(model, x_in.clone() if differentiated else x_in)
            finally:
                if trace is not None:
                    trace.close()  # a layer that raised is left, inside the guided mode
        if relus is not None and relus.clamps:
            clamps, count = relus.clamps, relus.count
            with deferred_checks() as checks:  # said in its place among the checks
                checks.add(None, lambda _: unguided_clamps_warning(model, clamps, count))
        hooks.remove()
        for name, _ in layers:
            calls = len(captured[name])
            if calls != 1:
                what = "never ran" if calls == 0 else f"ran {calls} times"
                raise LayerError(
                    f"layers: layer {name!r} {what} in the forward pass of "
                    f"{type(model).__name__}; expected it to run exactly once"
                )
        scores, classes = target_scores(output, resolved, batch)
        check_finite_scores(model, x, scores)  # x: never written
        inputs = [captured[name][0] for name, _ in layers]
        if input_gradient:
            inputs.append(x_in)
        if not scores.requires_grad:
            raise LayerError(
                "layers: the target score does not depend on any captured layer "
                f"({', '.join(name for name, _ in layers) or 'input'})"
            )
        grads: Sequence[torch.Tensor | None] = []
        guided_grad = None
        try:
            if inputs:
                if relus is not None:
                    relus.guiding = False  # the plain gradients first, the graph kept
                grads = torch.autograd.grad(
                    scores.sum(), inputs, allow_unused=True, retain_graph=guided
                )
            if relus is not None:
                relus.guiding = True
                (guided_grad,) = torch.autograd.grad(scores.sum(), [x_in], allow_unused=True)
        except RuntimeError as error:
            if "checkpoint" in str(error):
                raise checkpoint_backward_error(error) from error
            raise
    names = [f"layer {n!r}" for n, _ in layers] + ["the input"] * input_gradient
    # an all-zero layer or input gradient is said (its map is constant); a guided one is not
    check_gradients(
        names + ["the input (guided)"] * guided,
        [*grads, guided_grad],
        [True] * len(names) + [False] * guided,
    )
    unused = [name for (name, _), g in zip(layers, grads) if g is None]
    if unused:
        raise LayerError(
            f"layers: the target score does not depend on layer(s) {', '.join(map(repr, unused))}"
        )
    in_grad = grads[-1] if input_gradient else None
    if input_gradient and in_grad is None:
        in_grad = torch.zeros_like(x)
    if guided and guided_grad is None:
        guided_grad = torch.zeros_like(x)
    return Capture(
        classes=classes,
        activations=[found[n].to_channels_first(a.detach()) for (n, _), a in zip(layers, inputs)],
        gradients=[
            found[n].to_channels_first(g) for (n, _), g in zip(layers, grads) if g is not None
        ],
        input_gradient=in_grad,
        guided_gradient=guided_grad,
        guided_relus=relus.count if relus is not None else 0,
    )


def predicted_classes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The class ``model`` predicts for each sample of ``x`` (checked by the caller): one
    forward pass, no graph."""
    with explaining(model), torch.no_grad():
        output = forward(model, x.detach().clone())
    return target_classes(output, ClassTarget(), x.shape[0])
