"""Guided ReLUs for Guided Backpropagation, without patching anything global."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .diagnosis import guided_checkpoint_error, inside_checkpoint, relu_output_changed_error


class _GuidedReLU(torch.autograd.Function):
    """Identity on a ReLU's output. Its backward passes only the positive part of the
    gradient while its mode is guiding, and the gradient unchanged otherwise, so one forward
    pass serves a plain and a guided backward.

    The ReLU's own backward then masks by ``output > 0``, which completes the guided rule;
    nothing is saved and nothing is copied. The output is returned as an autograd view of
    itself, so an in-place change of it later in the forward pass fails there (autograd
    forbids changing a custom function's view in place) instead of in the backward pass
    (the ReLU's saved output): ``GuidedReLUs`` turns that failure into an
    ``UnsupportedModelError``. A model that does this cannot be differentiated either way.
    """

    @staticmethod
    def forward(ctx: Any, relu_output: torch.Tensor, mode: GuidedReLUs) -> torch.Tensor:
        ctx.mode = mode
        return relu_output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        if not ctx.mode.guiding:
            return grad, None
        return grad.clamp_min(0), None


_RELUS: frozenset[Callable[..., Any]] = frozenset(
    {torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_}
)


_CLAMPS: frozenset[Callable[..., Any]] = frozenset(
    {
        torch.clamp,
        torch.clamp_,
        torch.clip,
        torch.clip_,
        torch.clamp_min,
        torch.clamp_min_,
        torch.Tensor.clamp,
        torch.Tensor.clamp_,
        torch.Tensor.clip,
        torch.Tensor.clip_,
        torch.Tensor.clamp_min,
        torch.Tensor.clamp_min_,
    }
)


def _is_zero(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def relu_as_clamp(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    """Whether a call is a ReLU written as a clamp: ``clamp(x, min=0)``, ``x.clamp(0)``,
    ``x.clamp_min(0)``, ``torch.clip(x, 0)`` (in place too), with no upper bound. A bound
    given as a tensor is not read (that would wait for the device)."""
    if func not in _CLAMPS:
        return False
    low = kwargs.get("min", args[1] if len(args) > 1 else None)
    high = kwargs.get("max", args[2] if len(args) > 2 else None)
    return _is_zero(low) and high is None


class GuidedReLUs(TorchFunctionMode):
    """While active, every ReLU call backpropagates as in Guided Backpropagation.

    Covers ``nn.ReLU`` modules (in-place or not, they call ``F.relu``), ``F.relu``,
    ``torch.relu`` and ``Tensor.relu`` (and their in-place forms) called inside
    ``forward``. It is a thread-local torch function mode: nothing global is patched and
    nothing is left behind when it exits. Other activations (SiLU, GELU, LeakyReLU, ReLU6)
    are not guided: their gradients pass as in plain backpropagation, as in Captum.

    The forward values are unchanged: the ReLU runs as written (in place where it was) and
    its result is wrapped in an identity whose backward applies the guided rule
    ``grad_in = max(grad_out, 0) * [relu output > 0]`` while ``guiding`` is true, and
    passes the gradient unchanged otherwise (one forward pass, a plain and a guided
    backward).

    A ReLU written as a clamp (``x.clamp(min=0)``, ``torch.clamp_min(x, 0)``) is not guided
    (a clamp is not always an activation); such calls are counted (``clamps``) so that the
    caller can say so.

    A ReLU run inside activation checkpointing (``torch.utils.checkpoint``) raises
    [`UnsupportedModelError`][normgrad.UnsupportedModelError]: the backward pass would recompute
    it unguided.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.clamps = 0
        """ReLUs written as clamps that ran (not guided)."""
        self.guiding = True
        """Read when the gradient flows back: ``False`` gives the plain gradient."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in _RELUS and inside_checkpoint():
            raise guided_checkpoint_error()
        try:
            out = func(*args, **(kwargs or {}))
        except RuntimeError as error:  # an in-place op on a ReLU's output (a view of it)
            if "_GuidedReLU" in str(error):
                raise relu_output_changed_error() from error
            raise
        if func in _RELUS and isinstance(out, torch.Tensor) and out.requires_grad:
            self.count += 1
            return _GuidedReLU.apply(out, self)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            self.clamps += relu_as_clamp(func, args, kwargs or {})
        return out
