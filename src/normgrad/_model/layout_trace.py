"""How the tensors made inside a captured layer are laid out, from how they were made.

Read where a layer's output reads both ways (as many channels as positions), in any model
(``layout_detection``): the last convolution, norm, linear layer, pooling or ``Permute``
module leading to the output, followed through permutations, reshapes, activations, sums
and gates. A thread-local torch function mode, active only while a captured layer runs
(or, for a layer that holds no module setting a layout, from the model's input on).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from .layouts import CHANNELS_FIRST, CHANNELS_LAST

_FIRST: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Upsample,
)


def _sets_layout(module: nn.Module) -> bool:
    """Whether ``module`` is of a kind that sets its output's layout (``_module_kind``)."""
    kind = type(module)
    return (
        isinstance(module, _FIRST)
        or kind in (nn.Linear, nn.LayerNorm)
        or kind.__name__ == "Permute"
    )


def _module_kind(module: nn.Module, output: torch.Tensor) -> str | None:
    """The layout a layout-setting module leaves its output in: convolutions, batch, group
    and instance norms and pooling work on channels first; linear layers and LayerNorm (not
    its 2-D variants, subclasses that take channels first) on channels last; a ``Permute``
    module says where it puts them. ``None`` for any other module."""
    if isinstance(module, _FIRST):
        return CHANNELS_FIRST
    if type(module) in (nn.Linear, nn.LayerNorm):
        return CHANNELS_LAST
    dims = getattr(module, "dims", None)
    if type(module).__name__ != "Permute" or not isinstance(dims, (list, tuple)):
        return None
    if len(dims) != output.ndim:
        return None
    return CHANNELS_FIRST if list(dims)[1] == len(dims) - 1 else CHANNELS_LAST


_FIRST_FUNCTIONS = {
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.conv_transpose1d,
    F.conv_transpose2d,
    F.conv_transpose3d,
    F.batch_norm,
    F.instance_norm,
    F.group_norm,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
}
_LAST_FUNCTIONS = {F.linear, F.layer_norm}
# calls that may move the channel axis in ways not followed here: their output has no layout
_UNKNOWN_FUNCTIONS = {
    torch.einsum,
    torch.tensordot,
    torch.as_strided,
    torch.Tensor.as_strided,
    torch.t,
    torch.Tensor.t,
    torch.adjoint,
    torch.Tensor.adjoint,
    torch.Tensor.unfold,
    torch.rot90,
    torch.Tensor.rot90,
    # the getters of the transposing properties (x.T, x.mT, x.H, x.mH)
    *(getattr(torch.Tensor, name).__get__ for name in ("T", "mT", "H", "mH")),
}


_PERMUTING = {
    torch.permute,
    torch.Tensor.permute,
    torch.transpose,
    torch.Tensor.transpose,
    torch.swapaxes,
    torch.Tensor.swapaxes,
    torch.swapdims,
    torch.Tensor.swapdims,
    torch.movedim,
    torch.Tensor.movedim,
    torch.moveaxis,
    torch.Tensor.moveaxis,
}
_KEEPING = {
    torch.reshape,
    torch.Tensor.reshape,
    torch.Tensor.view,
    torch.flatten,
    torch.Tensor.flatten,
    torch.Tensor.unflatten,
    torch.Tensor.contiguous,
    torch.clone,
    torch.Tensor.clone,
    torch.Tensor.to,
    torch.Tensor.detach,
    torch.Tensor.__getitem__,
}


def _permutation(
    func: Callable[..., Any], ndim: int, args: Sequence[Any], kwargs: dict[str, Any]
) -> list[int] | None:
    """Where each output axis of a permuting call comes from (output axis ``i`` is input
    axis ``p[i]``): the same call on a meta tensor of sizes ``1, 2, ..., ndim``. ``None``
    when the call cannot be repeated so."""
    probe = torch.empty(tuple(range(1, ndim + 1)), device="meta")
    try:
        moved = func(probe, *args[1:], **kwargs)
    except (IndexError, TypeError, ValueError, RuntimeError):
        return None
    if not isinstance(moved, torch.Tensor) or moved.ndim != ndim:
        return None
    return [size - 1 for size in moved.shape]


def _moved(tag: str, order: list[int]) -> str | None:
    """The layout after a permutation ``order`` of a tensor in layout ``tag``."""
    ndim = len(order)
    axis = order.index(1 if tag == CHANNELS_FIRST else ndim - 1)
    if axis == 1:
        return CHANNELS_FIRST
    return CHANNELS_LAST if axis == ndim - 1 else None


def _tensors(values: Any) -> Iterator[torch.Tensor]:
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _tensors(value)


class LayoutTrace(TorchFunctionMode):
    """How the tensors made inside the captured layers are laid out, from how they were made.

    Active (``enter``/``leave``) only while a captured layer runs (see ``watch``), so a
    block's output that reads both ways (as many channels as positions) is read by the way
    it was produced, not by the kind of the block's last registered module
    (a squeeze-excitation ``Linear``, a ConvNeXt MLP whose output a ``forward`` permutes
    back). A tensor gets a layout when:

    - a layout-setting module (``_module_kind``) or function (a convolution, batch, group or
      instance norm or pooling: channels first; ``linear``, ``layer_norm``: channels last)
      outputs it;
    - a permutation (``permute``, ``transpose``, ``swapaxes``, ``movedim`` and their
      aliases) of a tensor with a layout makes it: the channel axis is followed;
    - a reshape, view, flatten, copy, cast or index of a tensor with a layout makes it (the
      channel axis keeps its end), as long as the number of dimensions is kept (reshape,
      view and flatten may change it);
    - any other call makes it from tensors of its own shape, and those of them with a layout
      all have the same one (an activation, a residual sum, a product with a broadcast
      gate).

    Anything else (an ``einsum``, tensors in different layouts, nothing with a layout) gives
    no layout, and the layer's layout is then asked for. Tensors are held by weak
    references (a tensor freed meanwhile is not kept alive, and an id reused by another
    tensor is not read as the freed one's).
    """

    def __init__(self) -> None:
        super().__init__()
        self._tags: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}
        self._depth = 0
        self._pending = 0  # watched layers that have not returned yet

    def layout(self, tensor: torch.Tensor) -> str | None:
        """The layout ``tensor`` was made in, if known."""
        held = self._tags.get(id(tensor))
        return held[1] if held is not None and held[0]() is tensor else None

    def _set(self, tensor: torch.Tensor, tag: str | None) -> None:
        if tag is None:
            self._tags.pop(id(tensor), None)
        else:
            self._tags[id(tensor)] = (weakref.ref(tensor), tag)

    def watch(self, model: nn.Module, layers: Sequence[nn.Module]) -> list[RemovableHandle]:
        """The hooks that follow how the outputs of ``layers`` (modules of ``model``) are
        made; the caller removes them, and calls ``close`` once the forward pass ends.

        Each layer is followed from its own start; where a layer holds no module that sets
        a layout (an activation module alone, a ``forward`` of functions), the whole
        forward pass is, from ``model``'s input (``(N, C, *spatial)``: channels first), so
        that its output's layout is the one its input was made in."""
        handles: list[RemovableHandle] = []
        self._pending = len(layers)
        whole = not isinstance(model, torch.jit.ScriptModule) and any(
            not any(_sets_layout(sub) for sub in layer.modules()) for layer in layers
        )
        if whole:
            handles.append(model.register_forward_pre_hook(self._start))
        for layer in layers:
            handles.append(layer.register_forward_pre_hook(lambda m, a: self.enter()))
        watched = model.modules() if whole else (s for layer in layers for s in layer.modules())
        seen: set[int] = set()
        for sub in watched:
            if id(sub) not in seen and not isinstance(sub, torch.jit.ScriptModule):
                seen.add(id(sub))
                handles.append(sub.register_forward_hook(self.module_hook))
        return handles

    def _start(self, model: nn.Module, args: Any) -> None:
        self.enter()
        if args and isinstance(args[0], torch.Tensor) and args[0].ndim >= 3:
            self._set(args[0], CHANNELS_FIRST)

    def enter(self) -> None:
        """A captured layer starts (a forward pre-hook)."""
        if self._depth == 0:
            self.__enter__()  # type: ignore[no-untyped-call]
        self._depth += 1

    def leave(self) -> None:
        """A captured layer returned (its forward hook, after its layout was read). Once
        every watched layer has, nothing is left to read: the rest of a forward pass
        followed from the model's input is not."""
        self._pending -= 1
        if self._depth <= 1 or self._pending <= 0:
            self.close()
        else:
            self._depth -= 1

    def close(self) -> None:
        """Stop following (every watched layer returned, or the forward pass ended or
        raised inside a layer)."""
        if self._depth > 0:
            self._depth = 0
            self.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        self._tags.clear()

    def module_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        """Forward hook of every module inside the captured layers."""
        if self._depth > 0 and isinstance(output, torch.Tensor) and output.ndim >= 3:
            kind = _module_kind(module, output)
            if kind is not None:
                self._set(output, kind)

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.ndim >= 3:
            self._set(out, self._made(func, args, kwargs, out))
        return out

    def _made(
        self,
        func: Callable[..., Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        out: torch.Tensor,
    ) -> str | None:
        if func in _FIRST_FUNCTIONS:
            return CHANNELS_FIRST
        if func in _LAST_FUNCTIONS:
            return CHANNELS_LAST
        if func in _UNKNOWN_FUNCTIONS:
            return None
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if func in _PERMUTING or func in _KEEPING:
            tag = self.layout(source) if source is not None else None
            if tag is None or source is None or (out is source):
                return tag
            if func in _KEEPING:
                return (
                    tag if out.ndim == source.ndim or func is not torch.Tensor.__getitem__ else None
                )
            order = _permutation(func, source.ndim, args, kwargs)
            return _moved(tag, order) if order is not None else None
        tags = {self.layout(t) for t in _tensors([*args, *kwargs.values()]) if t.shape == out.shape}
        tags.discard(None)
        return tags.pop() if len(tags) == 1 else None
