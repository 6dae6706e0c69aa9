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

from .._checks import check_finite_input, check_input
from .._deferred import deferred_checks
from .._errors import InvalidArgumentError, LayerError, describe
from .._transfer import to_device
from .diagnosis import (
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
from .outputs import layer_tensor, with_layer_tensor
from .per_class import class_scores, differentiate
from .targets import (
    ClassTarget,
    ResolvedTarget,
    require_resolved,
    target_classes,
)


@dataclass(frozen=True)
class Capture:
    """What one explained forward/backward pass produced (tensors detached).

    With ``K`` classes per sample (a target ``(N, K)``), ``per_class`` is ``K`` and every
    gradient holds ``N * K`` rows, sample-major (row ``n * K + k`` is class ``k`` of sample
    ``n``); the activations keep their ``N`` rows."""

    classes: torch.Tensor | None
    """The class index explained for each sample ``(N,)`` (``(N, K)``), or None for a score
    target."""
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
    per_class: int = 0
    """``K`` when each sample was explained for ``K`` classes at once, else 0."""


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    target: ResolvedTarget,
    *,
    layouts: Sequence[Layout] | None = None,
    input_gradient: bool = False,
    guided: bool = False,
    gradients: bool = True,
) -> Capture:
    """Run ``model`` on ``x`` once in eval mode and differentiate the target score once.

    Args:
        model: the classifier.
        x: the batch ``(N, C, *spatial)``.
        layers: ``(name, module)`` pairs whose outputs are captured.
        target: the target, resolved once by ``resolve_target`` where the call began (see
            [`Target`][normgrad.Target]); nothing else is accepted. Classes ``(N, K)``
            give ``K`` scores per sample, differentiated from the one forward pass by one
            batched backward (``is_grads_batched``; a loop over the ``K`` classes where a
            backward cannot be batched).
        layouts: the stated layout of each layer's output (``None``: detect); every
            activation and gradient is returned as ``(N, C, *spatial)``.
        input_gradient: also return the gradient with respect to ``x``.
        guided: also return the guided gradient with respect to ``x`` (Guided
            Backpropagation), from the same forward pass: its ReLUs are wrapped so that a
            second backward, after the plain one, is guided. The target callable, if any,
            runs after the forward pass, unguided.
        gradients: ``False``: the forward pass alone, without a graph, for the layers'
            activations and the classes (the result's ``gradients`` are then empty); not
            with ``input_gradient`` or ``guided``.

    The model is left as it was: hooks removed, training flags restored, no ``param.grad``
    written, also when an error is raised. ``x`` is never written: the model runs on a
    copy, so a forward that normalises its input in place changes only the copy. Calls on
    one model are serialised (see ``explaining``). A NaN or
    infinite score or gradient raises [`NonFiniteError`][normgrad.NonFiniteError].

    The checks of values (a finite input, classes in range, finite scores and gradients)
    are read once, with the calling explainer's, at the end of its call (see ``deferred``).
    """
    with deferred_checks():
        return _capture(model, x, layers, target, layouts, input_gradient, guided, gradients)


def _prepared(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    target: ResolvedTarget,
    differentiated: bool,
    guided: bool,
) -> ResolvedTarget:
    """The checks made before the pass; the target with its classes on ``x``'s device."""
    check_input(x, finite=False)
    check_finite_input(x)
    resolved = require_resolved(target, "capture")
    if (
        isinstance(resolved, ClassTarget)
        and resolved.classes is not None
        and resolved.index is None
    ):
        # copied to the device once, queued without waiting for the device (to_device)
        resolved = ClassTarget(to_device(resolved.classes, x.device))
    if not layers and not differentiated:
        raise InvalidArgumentError("layers: expected at least one layer to capture")
    check_supported(model, layers, guided)
    return resolved


class _Recorder:
    """The forward hooks' state: each layer's output, made a leaf of the graph, and its
    layout."""

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        layers: Sequence[tuple[str, nn.Module]],
        layouts: Sequence[Layout] | None,
        gradients: bool = True,
    ) -> None:
        self.model, self.batch, self.size = model, x.shape[0], x.shape[2:]
        self.gradients = gradients
        self.captured: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}
        self.stated = dict(zip((name for name, _ in layers), layouts or [None] * len(layers)))
        self.found: dict[str, Resolved] = {}
        # how the layers' outputs are made, where their layout is detected (an output with
        # as many channels as positions reads both ways)
        self.traced = {name for name, _ in layers if self.stated[name] is None}
        self.trace = LayoutTrace() if self.traced else None

    def hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, returned: Any) -> Any:
            output = layer_tensor(returned)  # a tuple's first tensor (see outputs.py)
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layers: expected layer {name!r} to output a tensor (N, C, *spatial) "
                    f"or a tuple whose first element is one, got {describe(output)}"
                )
            if output.ndim < 3 or output.shape[0] != self.batch:
                raise LayerError(
                    f"layers: expected layer {name!r} to output a feature map or tokens of "
                    f"the batch of {self.batch}, got shape {tuple(output.shape)}; choose a "
                    "block whose output keeps the image's spatial layout"
                )
            if inside_checkpoint(reentrant_only=True):
                raise reentrant_layer_error(name)
            traced = self.trace is not None and name in self.traced
            made = self.trace.layout(output) if self.trace is not None and traced else None
            self.found[name] = resolve_layout(
                output, self.size, self.stated[name], self.model, name, made
            )
            if self.trace is not None and traced:
                self.trace.leave()
            # From the first captured layer on, the forward records a graph (see _forward).
            torch.set_grad_enabled(self.gradients)
            detached = output.detach().requires_grad_(self.gradients)
            leaf = output if output.requires_grad else detached
            self.captured[name].append(leaf)
            # Hand a copy downstream: an in-place op there (ReLU(inplace=True)) must not
            # change the tensor whose value and gradient are read here.
            return with_layer_tensor(returned, leaf.clone())

        return hook

    def inputs(self, layers: Sequence[tuple[str, nn.Module]]) -> list[torch.Tensor]:
        """The captured leaf of each layer; raises unless each ran exactly once."""
        for name, _ in layers:
            calls = len(self.captured[name])
            if calls != 1:
                what = "never ran" if calls == 0 else f"ran {calls} times"
                raise LayerError(
                    f"layers: layer {name!r} {what} in the forward pass of "
                    f"{type(self.model).__name__}; expected it to run exactly once: "
                    + (
                        "choose a layer the forward pass reaches (a module the model calls)"
                        if calls == 0
                        else "choose a layer called once per pass (a module reused, e.g. one "
                        "activation shared by several blocks, holds several maps: explain "
                        "the block's own output instead)"
                    )
                )
        return [self.captured[name][0] for name, _ in layers]


def _forward(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    recorder: _Recorder,
    hooks: HookSet,
    differentiated: bool,
    relus: GuidedReLUs | None,
) -> tuple[Any, torch.Tensor]:
    """The model's output on a copy of ``x`` and the leaf ``x_in`` differentiated against,
    the layers' outputs recorded by ``recorder``; the hooks are removed on return."""
    trace = recorder.trace
    if trace is not None:
        for handle in trace.watch(model, [m for n, m in layers if n in recorder.traced]):
            hooks.add(handle)
    for name, module in layers:
        hooks.add(module.register_forward_hook(recorder.hook(name)))
    with torch.inference_mode(False):
        # the model gets a copy: an in-place op in its forward (x.sub_(mean)) must change
        # neither the caller's tensor nor the leaf differentiated against (an alias of x,
        # never written, unless x is an inference tensor)
        x_in = x.detach()
        if not differentiated or x_in.is_inference():
            x_in = x_in.clone()
        x_in.requires_grad_(differentiated)
    # Only the part of the forward pass after the first captured layer needs a graph:
    # nothing computed before it can carry gradient to it. Its hook switches grad mode on;
    # the context restores the mode on exit.
    with torch.set_grad_enabled(differentiated), relus or contextlib.nullcontext():
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
    return output, x_in


def _backward(
    scores: torch.Tensor, inputs: list[torch.Tensor], x_in: torch.Tensor, relus: GuidedReLUs | None
) -> tuple[list[torch.Tensor | None], torch.Tensor | None]:
    """The plain gradients of ``inputs`` and, with ``relus``, the guided gradient of
    ``x_in`` from the same graph."""
    grads: list[torch.Tensor | None] = []
    guided_grad = None
    try:
        if inputs:
            if relus is not None:
                relus.guiding = False  # the plain gradients first, the graph kept
            grads = differentiate(scores, inputs, retain=relus is not None)
        if relus is not None:
            relus.guiding = True
            (guided_grad,) = differentiate(scores, [x_in], retain=False)
    except RuntimeError as error:
        if "checkpoint" in str(error):
            raise checkpoint_backward_error(error) from error
        raise
    return grads, guided_grad


def _capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    target: ResolvedTarget,
    layouts: Sequence[Layout] | None,
    input_gradient: bool,
    guided: bool,
    gradients: bool = True,
) -> Capture:
    differentiated = input_gradient or guided
    resolved = _prepared(model, x, layers, target, differentiated, guided)
    batch = x.shape[0]
    recorder = _Recorder(model, x, layers, layouts, gradients)
    relus = GuidedReLUs() if guided else None
    with explaining(model), HookSet() as hooks:
        output, x_in = _forward(model, x, layers, recorder, hooks, differentiated, relus)
        inputs = recorder.inputs(layers)
        scores, classes = class_scores(output, resolved, batch)
        # x: never written; per sample, a non-finite class score makes the sum non-finite
        check_finite_scores(model, x, scores if scores.ndim == 1 else scores.sum(dim=1))
        if input_gradient:
            inputs.append(x_in)
        if gradients and not scores.requires_grad:
            raise LayerError(
                "layers: the target score does not depend on any captured layer "
                f"({', '.join(name for name, _ in layers) or 'input'})"
            )
        grads, guided_grad = _backward(scores, inputs, x_in, relus) if gradients else ([], None)
    return _result(x, layers, recorder, inputs, grads, guided_grad, classes, relus)


def _result(
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    recorder: _Recorder,
    inputs: list[torch.Tensor],
    grads: list[torch.Tensor | None],
    guided_grad: torch.Tensor | None,
    classes: torch.Tensor | None,
    relus: GuidedReLUs | None,
) -> Capture:
    """The capture of the pass, its gradients checked."""
    input_gradient = len(inputs) > len(layers)
    guided = relus is not None
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
    per_class = classes.shape[1] if classes is not None and classes.ndim == 2 else 0
    rows = x.shape[0] * max(per_class, 1)
    in_grad = grads[-1] if input_gradient else None
    if input_gradient and in_grad is None:
        in_grad = x.new_zeros(rows, *x.shape[1:])
    if guided and guided_grad is None:
        guided_grad = x.new_zeros(rows, *x.shape[1:])
    found = recorder.found
    return Capture(
        classes=classes,
        activations=[found[n].to_channels_first(a.detach()) for (n, _), a in zip(layers, inputs)],
        gradients=[
            found[n].to_channels_first(g) for (n, _), g in zip(layers, grads) if g is not None
        ],
        input_gradient=in_grad,
        guided_gradient=guided_grad,
        guided_relus=relus.count if relus is not None else 0,
        per_class=per_class,
    )


def predicted_classes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The class ``model`` predicts for each sample of ``x`` (checked by the caller): one
    forward pass, no graph."""
    with explaining(model), torch.no_grad():
        output = forward(model, x.detach().clone())
    return target_classes(output, ClassTarget(), x.shape[0])
