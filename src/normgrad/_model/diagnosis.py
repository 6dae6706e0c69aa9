"""What can go wrong when a model is run to be explained, said precisely when it does.

Each check here diagnoses only what it knows: a forward error is blamed on the input's
channels or dtype only when that is what failed; otherwise the model's own error stays
in front. Non-finite scores and gradients are caught in the one pass, naming the samples
and the first module whose output stopped being finite.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.utils.checkpoint as checkpoint_module
from torch import nn

from .._deferred import deferred_checks
from .._errors import (
    ArgumentTypeError,
    NonFiniteError,
    ShapeError,
    UnsupportedModelError,
    warn,
)
from .hooks import HookSet, explaining
from .layers import first_conv

_CHECKPOINT = inspect.unwrap(checkpoint_module.checkpoint).__code__
_REENTRANT = checkpoint_module.CheckpointFunction.forward.__code__

_EAGER_FIX = (
    "explain the eager model instead (the nn.Module before torch.jit.script or "
    "torch.jit.trace, with the same weights)"
)


def inside_checkpoint(reentrant_only: bool = False) -> bool:
    """Whether the caller runs inside ``torch.utils.checkpoint.checkpoint`` (only its
    reentrant form when ``reentrant_only``)."""
    codes = (_REENTRANT,) if reentrant_only else (_REENTRANT, _CHECKPOINT)
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def check_supported(
    model: nn.Module, layers: Sequence[tuple[str, nn.Module]], guided: bool
) -> None:
    """Refuse TorchScript where hooks or guided ReLUs are needed: they cannot reach
    compiled code, and a guided pass that guided nothing would be another method."""
    for name, module in layers:
        if isinstance(module, torch.jit.ScriptModule):
            raise UnsupportedModelError(
                f"layers: layer {name!r} is a TorchScript module "
                f"({type(module).__name__}); its output cannot be hooked in compiled code: "
                f"{_EAGER_FIX}"
            )
    if guided and any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        raise UnsupportedModelError(
            f"model: Guided Backpropagation cannot guide the ReLUs of a TorchScript model "
            f"({type(model).__name__}): compiled code runs them without Python, and the "
            f"result would be the plain gradient, another method; {_EAGER_FIX}"
        )


def guided_checkpoint_error() -> UnsupportedModelError:
    """The error for a ReLU run inside activation checkpointing during a guided pass."""
    return UnsupportedModelError(
        "model: Guided Backpropagation cannot run through activation checkpointing "
        "(torch.utils.checkpoint): the checkpointed blocks are recomputed in the backward "
        "pass without guided ReLUs. Turn checkpointing off for the explanation (e.g. "
        "torchvision DenseNet: memory_efficient=False, same weights), or use a method "
        "without guided ReLUs (NormGrad, Grad-CAM, Gradient)"
    )


def relu_output_changed_error() -> UnsupportedModelError:
    """The error for a ReLU output changed in place later in the forward pass."""
    return UnsupportedModelError(
        "model: the forward pass changes a ReLU's output in place after the ReLU (e.g. "
        "`h = relu(x); h += y`): autograd cannot differentiate through it (the ReLU keeps "
        "its output for its backward pass), for Guided Backpropagation or any gradient "
        "method. Write the change out of place (`h = h + y`) or clone the ReLU's output"
    )


def reentrant_layer_error(name: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"layers: layer {name!r} runs inside reentrant activation checkpointing "
        "(torch.utils.checkpoint(..., use_reentrant=True)): its output is recomputed in "
        "the backward pass, so its gradient cannot be read. Use use_reentrant=False, turn "
        "checkpointing off for the explanation, or choose a layer outside the "
        "checkpointed block"
    )


def checkpoint_backward_error(error: RuntimeError) -> UnsupportedModelError:
    return UnsupportedModelError(
        "model: the backward pass failed inside activation checkpointing "
        f"(torch.utils.checkpoint): {error}. Reentrant checkpointing "
        "(use_reentrant=True) cannot give the gradient with respect to the input; use "
        "use_reentrant=False, or turn checkpointing off for the explanation"
    )


def _parameter_dtypes(model: nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters() if p.is_floating_point()}


def forward(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)``; a failure is blamed on ``x`` only when that is known to be the cause:
    the first convolution itself failed on what it got, or ``x``'s dtype is not the
    model's. Otherwise the model's own error is raised as it was."""
    first = first_conv(model)
    received: list[tuple[int, ...]] = []
    finished: list[bool] = []
    with HookSet() as hooks:
        if first is not None and not isinstance(first[1], torch.jit.ScriptModule):
            conv = first[1]
            hooks.add(conv.register_forward_pre_hook(lambda m, a: received.append(_shape(a))))
            hooks.add(conv.register_forward_hook(lambda m, a, o: finished.append(True)))
        try:
            return model(x)
        except (RuntimeError, ValueError) as error:
            dtypes = _parameter_dtypes(model)
            if len(dtypes) == 1 and x.dtype not in dtypes:
                (dtype,) = dtypes
                raise ArgumentTypeError(
                    f"x: dtype {x.dtype}, but the parameters of {type(model).__name__} are "
                    f"{dtype}, and the forward pass failed ({error}); normgrad does not cast "
                    f"the input for you: pass x.to({dtype}) (or convert the model)"
                ) from error
            if first is not None and received:
                _blame_first_conv(first, received[-1], bool(finished), x, error)
            raise


def _shape(args: Any) -> tuple[int, ...]:
    arg = args[0] if args else None
    return tuple(arg.shape) if isinstance(arg, torch.Tensor) else ()


def _blame_first_conv(
    first: tuple[str, nn.modules.conv._ConvNd],
    got: tuple[int, ...],
    finished: bool,
    x: torch.Tensor,
    error: Exception,
) -> None:
    """Raise a ShapeError when the forward pass failed and the first convolution got an
    input it cannot take as a batch: one of another rank (an unbatched one runs, and the
    next layer fails), or, when the convolution itself failed, of other channels."""
    name, conv = first
    spatial = len(conv.kernel_size)
    came = "" if got == tuple(x.shape) else f" (made by the model from x of shape {tuple(x.shape)})"
    if len(got) != spatial + 2:
        layout = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[spatial]
        raise ShapeError(
            f"x: expected a {spatial + 2}-D batch {layout} for the first layer {name!r} "
            f"({type(conv).__name__}), got a {len(got)}-D tensor of shape {got}{came}",
            x.shape,
        ) from error
    if not finished and got[1] != conv.in_channels:
        raise ShapeError(
            f"x: expected {conv.in_channels} channels (the first layer {name!r} takes "
            f"{conv.in_channels}), got {got[1]} in a tensor of shape {got}{came}",
            x.shape,
        ) from error


def _first_non_finite_module(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module] | None:
    """Rerun ``model`` (no graph) to find the first module, in execution order, whose
    output holds a NaN or an infinity."""
    found: list[tuple[str, nn.Module]] = []

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if (
                not found
                and isinstance(output, torch.Tensor)
                and output.is_floating_point()
                and not bool(torch.isfinite(output).all())
            ):
                found.append((name, module))

        return record

    with HookSet() as hooks, torch.no_grad():
        for name, module in model.named_modules():
            if name and not isinstance(module, torch.jit.ScriptModule):
                hooks.add(module.register_forward_hook(hook(name)))
        try:
            model(x.detach().clone())
        except Exception:  # the diagnosis must never hide the real error
            return None
    return found[0] if found else None


def check_finite_scores(model: nn.Module, x: torch.Tensor, scores: torch.Tensor) -> None:
    """Raise [`NonFiniteError`][normgrad.NonFiniteError] when a score is NaN or infinite (``x`` the
    model's input, rerun on that path only to find where the values broke), when the call's
    checks are read."""

    def action(values: list[float]) -> None:
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            _raise_non_finite_scores(model, x, bad, scores.shape[0])

    with deferred_checks() as checks:  # the scores themselves are read: no kernel
        checks.add(scores.detach(), action)


def _raise_non_finite_scores(model: nn.Module, x: torch.Tensor, bad: list[int], n: int) -> None:
    with explaining(model):  # the rerun sees the model as the pass did (eval mode)
        where = _first_non_finite_module(model, x)
    cause = (
        "likely causes: weights re-initialised or loaded while BatchNorm running statistics "
        "were kept (eval mode divides by running_var), an input far outside the range the "
        "model was trained on (e.g. raw Hounsfield units or counts, not normalised), a "
        "half-precision overflow, or the arithmetic of a target callable"
    )
    if where is not None:
        name, module = where
        first = f"the first module whose output is not finite is {name!r} ({type(module).__name__})"
        cause = f"{first}; " + (
            "its running statistics do not fit its input (weights re-initialised or loaded "
            "while running_mean/running_var were kept?): recompute them on training data, "
            "or call module.reset_running_stats()"
            if isinstance(module, nn.modules.batchnorm._NormBase)
            else cause
        )
    raise NonFiniteError(
        f"model: the target score is NaN or infinite for sample(s) {bad} of the batch of "
        f"{n} passed to {type(model).__name__}; no saliency can be computed "
        f"from it: {cause}"
    )


def check_gradients(
    names: Sequence[str], gradients: Sequence[torch.Tensor | None], zero_warned: Sequence[bool]
) -> None:
    """Raise [`NonFiniteError`][normgrad.NonFiniteError] when a gradient is NaN or infinite;
    warn when it is zero everywhere for some samples and ``zero_warned`` says so.

    An all-zero gradient means no gradient reaches that layer (or the input) for those
    samples: the target score does not depend on it there, so every gradient method's map
    of it is constant, and the constant-map warning's usual causes (a tiny map, a large
    VIL) are not the reason. The per-sample flags are read with the call's other checks.
    """
    with deferred_checks() as checks:
        for name, gradient, warned in zip(names, gradients, zero_warned):
            if gradient is None:
                continue
            # one kernel: the largest magnitude per sample is NaN (or inf) for a non-finite
            # sample, 0 for an all-zero one
            dims = tuple(range(1, gradient.ndim))
            top = torch.linalg.vector_norm(gradient.detach(), math.inf, dim=dims)
            checks.add(top, _gradient_action(name, warned))


def _gradient_action(name: str, warned: bool) -> Callable[[list[float]], None]:
    def action(top: list[float]) -> None:
        bad = [i for i, v in enumerate(top) if not math.isfinite(v)]
        if bad:
            raise NonFiniteError(
                f"model: the gradient of the target score with respect to {name} is NaN or "
                f"infinite for sample(s) {bad}, though the score is finite; likely causes: "
                "an operation with an infinite derivative in the backward pass (sqrt or "
                "log at 0, division by a value near 0) or a half-precision overflow"
            )
        zeros = [i for i, v in enumerate(top) if v == 0]
        if zeros and warned:
            warn(
                f"no gradient reaches {name} for sample(s) {zeros}: the gradient of the "
                "target score with respect to it is zero everywhere, so the score does not "
                "depend on it there and its map is constant (it carries no spatial "
                "information). Usual causes: a classifier head or a gate that is zero (an "
                "untrained or zeroed head), a ReLU or mask that is off everywhere after the "
                "layer, or a target score that does not use this output"
            )

    return action


def unguided_clamps_warning(model: nn.Module, clamps: int, guided: int) -> None:
    """Say that ``clamps`` ReLUs written as clamps ran unguided in a guided pass."""
    others = (
        f"while {guided} ReLU call(s) were guided, so the map mixes guided and plain "
        "backpropagation"
        if guided
        else "and no ReLU was"
    )
    warn(
        f"GuidedBackprop: {clamps} call(s) of clamp with min=0 and no max (a ReLU written as "
        f"x.clamp(min=0) or torch.clamp_min(x, 0)) ran in the forward pass of "
        f"{type(model).__name__} and were not guided, {others}. If they are activations, "
        "write them as torch.relu, F.relu or nn.ReLU to guide them; a clamp that is not an "
        "activation (a variance kept non-negative) is right as it is"
    )
