"""One forward and one backward pass: layer activations and the target score's gradients.

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

from ._errors import ArgumentTypeError, InvalidArgumentError, LayerError, ShapeError, describe
from ._model import HookSet, explaining, first_conv
from ._target import Target, check_target_type, target_scores


@dataclass(frozen=True)
class Capture:
    """What one explained forward/backward pass produced (all tensors detached)."""

    output: Any
    """The model output."""
    target: torch.Tensor | None
    """The class index explained for each sample ``(N,)``, or None for a callable target."""
    activations: list[torch.Tensor]
    """One activation ``(N, C, *spatial)`` per requested layer."""
    gradients: list[torch.Tensor]
    """The gradient of the score with respect to each activation."""
    input_gradient: torch.Tensor | None
    """The gradient with respect to the input, when it was asked for."""


def check_input(x: object, argument: str = "x") -> torch.Tensor:
    """Validate the batch to explain: a finite floating tensor (N, C, H, W) or (N, C, D, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(
            f"{argument}: expected a tensor of shape (N, C, H, W) or (N, C, D, H, W), "
            f"got {describe(x)}"
        )
    if x.ndim not in (4, 5):
        raise ShapeError(
            f"{argument}: expected a 4-D image batch (N, C, H, W) or a 5-D volume batch "
            f"(N, C, D, H, W), got a {x.ndim}-D tensor of shape {tuple(x.shape)}"
            + ("; add a batch dimension with x.unsqueeze(0)" if x.ndim in (3,) else ""),
            x.shape,
        )
    if not x.is_floating_point():
        raise ArgumentTypeError(
            f"{argument}: expected a floating point tensor, got dtype {x.dtype}"
        )
    if x.shape[0] == 0 or any(s == 0 for s in x.shape[1:]):
        raise ShapeError(
            f"{argument}: expected a non-empty batch, got shape {tuple(x.shape)}", x.shape
        )
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InvalidArgumentError(
            f"{argument}: expected finite values, got {bad} NaN or infinite value(s)"
        )
    return x


def _forward(model: nn.Module, x: torch.Tensor) -> Any:
    try:
        return model(x)
    except (RuntimeError, ValueError) as error:
        first = first_conv(model)
        if first is None:
            raise
        name, conv = first
        spatial = len(conv.kernel_size)
        if spatial != x.ndim - 2:
            layout = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[spatial]
            raise ShapeError(
                f"x: expected a {spatial + 2}-D batch {layout} for the first layer {name!r} "
                f"({type(conv).__name__}), got a {x.ndim}-D tensor of shape {tuple(x.shape)}",
                x.shape,
            ) from error
        if conv.in_channels != x.shape[1]:
            raise ShapeError(
                f"x: expected {conv.in_channels} channels (the first layer {name!r} takes "
                f"{conv.in_channels}), got {x.shape[1]} in a tensor of shape {tuple(x.shape)}",
                x.shape,
            ) from error
        raise


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    target: Target = None,
    *,
    input_gradient: bool = False,
    backward_context: contextlib.AbstractContextManager[Any] | None = None,
) -> Capture:
    """Run ``model`` on ``x`` once in eval mode and differentiate the target score once.

    Args:
        model: the classifier.
        x: the batch ``(N, C, *spatial)``.
        layers: ``(name, module)`` pairs whose outputs are captured.
        target: see :data:`normgrad.Target`.
        input_gradient: also return the gradient with respect to ``x``.
        backward_context: entered around the forward and backward pass (e.g. hooks that
            change how gradients flow), exited before returning.

    The model is left as it was: hooks removed, training flags restored, no ``param.grad``
    written, also when an error is raised.
    """
    check_input(x)
    check_target_type(target)
    if not layers and not input_gradient:
        raise InvalidArgumentError("layers: expected at least one layer to capture")
    if x.is_inference():
        with torch.inference_mode(False):
            x = x.clone()
    batch = x.shape[0]
    captured: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layers: expected layer {name!r} to output a tensor (N, C, *spatial), "
                    f"got {describe(output)}"
                )
            if output.ndim != x.ndim or output.shape[0] != batch:
                raise LayerError(
                    f"layers: expected layer {name!r} to output a tensor of shape "
                    f"({batch}, C, {', '.join(['*'] * (x.ndim - 2))}) like the input, got "
                    f"shape {tuple(output.shape)}; choose a convolutional block"
                )
            # From the first captured layer on, the forward records a graph (see below).
            torch.set_grad_enabled(True)
            leaf = output if output.requires_grad else output.detach().requires_grad_()
            captured[name].append(leaf)
            # Hand a copy downstream: an in-place op there (ReLU(inplace=True)) must not
            # change the tensor whose value and gradient are read here.
            return leaf.clone()

        return hook

    with explaining(model), HookSet() as hooks:
        for name, module in layers:
            hooks.add(module.register_forward_hook(make_hook(name)))
        x_in = x.detach()
        if input_gradient:
            x_in.requires_grad_(True)
        with backward_context if backward_context is not None else contextlib.nullcontext():
            # Only the part of the forward pass after the first captured layer needs a graph:
            # nothing computed before it can carry gradient to it. Its hook switches grad
            # mode on; the context restores the mode on exit.
            with torch.set_grad_enabled(input_gradient):
                output = _forward(model, x_in)
            hooks.remove()
            for name, _ in layers:
                calls = len(captured[name])
                if calls != 1:
                    what = "never ran" if calls == 0 else f"ran {calls} times"
                    raise LayerError(
                        f"layers: layer {name!r} {what} in the forward pass of "
                        f"{type(model).__name__}; expected it to run exactly once"
                    )
            scores, classes = target_scores(output, target, batch)
            inputs = [captured[name][0] for name, _ in layers]
            if input_gradient:
                inputs.append(x_in)
            if not scores.requires_grad:
                raise LayerError(
                    "layers: the target score does not depend on any captured layer "
                    f"({', '.join(name for name, _ in layers) or 'input'})"
                )
            grads = torch.autograd.grad(scores.sum(), inputs, allow_unused=True)
    unused = [name for (name, _), g in zip(layers, grads) if g is None]
    if unused:
        raise LayerError(
            f"layers: the target score does not depend on layer(s) {', '.join(map(repr, unused))}"
        )
    layer_grads = [g for g in grads[: len(layers)] if g is not None]
    in_grad = grads[-1] if input_gradient else None
    if input_gradient and in_grad is None:
        in_grad = torch.zeros_like(x)
    return Capture(
        output=output.detach() if isinstance(output, torch.Tensor) else output,
        target=classes,
        activations=[a.detach() for a in inputs[: len(layers)]],
        gradients=layer_grads,
        input_gradient=in_grad,
    )


def resolve_classes(model: nn.Module, x: torch.Tensor, target: Target) -> Target:
    """Fix the target of ``x`` before explaining perturbed copies of it.

    Class targets become a tensor ``(N,)`` of class indices, validated against the model's
    output; ``None`` becomes the class the model predicts for ``x`` itself, so noisy or
    interpolated inputs are all explained for the same class. This costs one forward pass
    without gradients. A callable target is returned as it is.
    """
    check_input(x)
    check_target_type(target)
    if callable(target) and not isinstance(target, torch.Tensor):
        return target
    with explaining(model), torch.no_grad():
        output = _forward(model, x)
    _, classes = target_scores(output, target, x.shape[0])
    return classes


def repeat_target(target: Target, times: int) -> Target:
    """The target of ``x`` for ``x`` repeated ``times`` along the batch (``x.repeat``).

    Takes what :func:`resolve_classes` returns: class indices ``(N,)`` or a callable.
    """
    if isinstance(target, torch.Tensor) and target.ndim == 1:
        return target.repeat(times)
    return target
