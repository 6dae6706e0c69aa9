"""Detecting a layer's output layout from its shape, the input's size and the model.

A reading is taken when it is the only one that fits the input's geometry; the model says
what shapes cannot (a ViT's patch size and prefix tokens, whether it is a plain CNN), and
where a block's output reads both ways in a model that is not a plain CNN, how the output
was made during the forward pass settles it (``LayoutTrace``); otherwise a
[`LayerError`][normgrad.LayerError] asks the user to state the layout (see ``layouts``). A
reading that does not fit is never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .._errors import LayerError
from .layouts import CHANNELS_FIRST, CHANNELS_LAST, TOKENS, Layout, Resolved, Tokens

# At most this many prefix tokens are considered when nothing says how many there are.
_MAX_PREFIX = 16


def _inside(spatial: Sequence[int], image: Sequence[int]) -> bool:
    """Whether a map of size ``spatial`` could be the image downsampled: no size above the
    image's, none empty."""
    return len(spatial) == len(image) and all(1 <= s <= i for s, i in zip(spatial, image))


def _fits(spatial: Sequence[int], image: Sequence[int]) -> bool:
    """Whether a map of size ``spatial`` is the image seen at one stride, up to rounding:
    some scale ``t`` (1 / stride) has ``|spatial_d - image_d * t| <= 1`` in every dimension."""
    if not _inside(spatial, image):
        return False
    low = max((s - 1) / i for s, i in zip(spatial, image))
    high = min((s + 1) / i for s, i in zip(spatial, image))
    return low <= high + 1e-12


def _exact(spatial: Sequence[int], image: Sequence[int]) -> bool:
    """Whether a map of size ``spatial`` is the image at one integer stride ``s``, each size
    ``image_d / s`` rounded down or up."""
    if len(spatial) != len(image):
        return False
    return any(
        all(o in (i // s, -(-i // s)) for o, i in zip(spatial, image))
        for s in range(1, max(image) + 1)
    )


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

    Active (``enter``/``leave``) only while a captured layer of a model that is not a plain
    CNN runs, so a block's output that reads both ways (as many channels as positions) is
    read by the way it was produced, not by the kind of the block's last registered module
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
    no layout, and the layer's layout is then asked for. Tensors are held until the
    outermost captured layer returns, so an id is never reused meanwhile.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tags: dict[int, tuple[torch.Tensor, str]] = {}
        self._depth = 0

    def layout(self, tensor: torch.Tensor) -> str | None:
        """The layout ``tensor`` was made in, if known."""
        held = self._tags.get(id(tensor))
        return held[1] if held is not None and held[0] is tensor else None

    def _set(self, tensor: torch.Tensor, tag: str | None) -> None:
        if tag is None:
            self._tags.pop(id(tensor), None)
        else:
            self._tags[id(tensor)] = (tensor, tag)

    def enter(self) -> None:
        """A captured layer starts (a forward pre-hook)."""
        if self._depth == 0:
            self.__enter__()  # type: ignore[no-untyped-call]
        self._depth += 1

    def leave(self) -> None:
        """A captured layer returned (its forward hook, after its layout was read), or the
        forward pass was abandoned (``close``)."""
        self._depth -= 1
        if self._depth == 0:
            self.__exit__(None, None, None)  # type: ignore[no-untyped-call]
            self._tags.clear()

    def close(self) -> None:
        """Leave every layer still entered (the forward pass raised inside one)."""
        while self._depth > 0:
            self.leave()

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


def convolutional(model: nn.Module) -> bool:
    """Whether ``model`` holds nothing that works on channels last or on tokens (no
    LayerNorm over the last dimension, no attention, no permutation): a plain CNN."""
    for sub in model.modules():
        kind = type(sub).__name__
        if type(sub) is nn.LayerNorm or isinstance(sub, nn.MultiheadAttention):
            return False
        if kind == "Permute" or "Attention" in kind or "Transformer" in kind:
            return False
    return True


def _model_tokens(
    model: nn.Module, image: Sequence[int]
) -> tuple[int | None, tuple[int, ...] | None]:
    """Prefix count and patch grid as the model states them (timm, torchvision ViT)."""
    for module in model.modules():
        embed = getattr(module, "patch_embed", None)
        prefix = getattr(module, "num_prefix_tokens", None)
        if isinstance(embed, nn.Module):
            grid: tuple[int, ...] | None = None
            feat_size = getattr(embed, "dynamic_feat_size", None)
            patch: object = getattr(embed, "patch_size", None)
            if callable(feat_size):
                grid = tuple(int(g) for g in feat_size(tuple(image)))
            elif isinstance(patch, (int, tuple, list)):
                sizes = (patch,) * len(image) if isinstance(patch, int) else tuple(patch)
                grid = tuple(i // int(p) for i, p in zip(image, sizes))
            return (prefix if isinstance(prefix, int) else None), grid
        patch_size = getattr(module, "patch_size", None)
        if isinstance(patch_size, int) and isinstance(
            getattr(module, "class_token", None), nn.Parameter
        ):
            return 1, tuple(i // patch_size for i in image)  # torchvision VisionTransformer
    return None, None


def _token_candidates(tokens: int, image: Sequence[int], stated: Tokens) -> list[Resolved]:
    prefixes = [stated.prefix] if stated.prefix is not None else range(_MAX_PREFIX + 1)
    grids: set[tuple[int, ...]] = set()
    if stated.grid is not None:
        grids.add(stated.grid)
    else:
        for stride in range(1, max(image) + 1):
            grid = tuple(i // stride for i in image)
            if min(grid) >= 1:
                grids.add(grid)
    return [
        Resolved(TOKENS, p, g)
        for p in prefixes
        for g in sorted(grids)
        if p + math.prod(g) == tokens
    ]


def _how_to_state(name: str) -> str:
    return (
        f"state it with layout='channels_first', 'channels_last' or "
        f"normgrad.Tokens(prefix=..., grid=...) (or layout={{{name!r}: ...}} for this layer)"
    )


def resolve_layout(
    output: torch.Tensor,
    image: Sequence[int],
    stated: Layout,
    model: nn.Module,
    name: str,
    made: str | None = None,
) -> Resolved:
    """Fix the layout of ``output`` of layer ``name`` for an input of spatial size ``image``.

    ``made`` is the layout the forward pass made ``output`` in (``LayoutTrace``), if known:
    it settles a shape that reads both ways in a model that is not a plain CNN.

    Raises [`LayerError`][normgrad.LayerError] when the stated layout does not fit, or when no
    layout or several layouts fit and none is stated.
    """
    shape = tuple(output.shape)
    k = len(image)
    if stated == TOKENS or isinstance(stated, Tokens) or (stated is None and output.ndim == k + 1):
        return _resolve_tokens(shape, image, stated, model, name)
    if output.ndim == k + 1:
        raise LayerError(
            f"layers: layer {name!r} outputs tokens {shape} (N, T, C), not a feature map as "
            f"stated ({stated!r}); leave layout=None or state normgrad.Tokens(...)"
        )
    if output.ndim != k + 2:
        raise LayerError(
            f"layers: layer {name!r} outputs shape {shape}, which is not (N, C, *spatial), "
            f"(N, *spatial, C) or tokens (N, T, C) for an input with {k} spatial "
            "dimensions; choose a layer whose output is a feature map or a token sequence"
        )
    readings = {CHANNELS_FIRST: shape[2:], CHANNELS_LAST: shape[1:-1]}
    if stated in readings:
        assert isinstance(stated, str)
        other = CHANNELS_LAST if stated == CHANNELS_FIRST else CHANNELS_FIRST
        if _inside(readings[stated], image) and (
            _fits(readings[stated], image) or not _fits(readings[other], image)
        ):
            return Resolved(stated)
        raise LayerError(
            f"layers: layer {name!r} outputs shape {shape}; read as {stated} (the stated "
            f"layout) its spatial size {readings[stated]} does not fit the input's "
            f"{tuple(image)}"
            + (
                f", read as {other} it does ({readings[other]})"
                if _fits(readings[other], image)
                else ""
            )
            + "; "
            + _how_to_state(name)
        )
    # a reading at one integer stride first, then one that fits up to rounding; when both
    # read well (channels as many as the positions), a plain CNN or the way the output was
    # made settles it (the model is looked at only then: it walks the model's modules)
    for test in (_exact, _fits):
        fitting = [kind for kind, spatial in readings.items() if test(spatial, image)]
        if len(fitting) == 1:
            return Resolved(fitting[0])
        if len(fitting) == 2:
            hint = CHANNELS_FIRST if convolutional(model) else made
            if hint is not None:
                return Resolved(hint)
    plausible = [kind for kind, spatial in readings.items() if _inside(spatial, image)]
    if not fitting and len(plausible) == 1:
        return Resolved(plausible[0])
    which = " and ".join(f"{kind} (spatial {readings[kind]})" for kind in (fitting or plausible))
    unseen = (
        " (the forward pass does not show how it was made: no convolution, norm, linear "
        "layer or permutation inside the layer leads to it)"
        if len(fitting) == 2
        else ""
    )
    raise LayerError(
        f"layers: cannot tell the layout of layer {name!r}: its output {shape} for an input "
        f"of spatial size {tuple(image)} reads as {which or 'no feature map'}{unseen}; "
        + _how_to_state(name)
    )


def _resolve_tokens(
    shape: tuple[int, ...], image: Sequence[int], stated: Layout, model: nn.Module, name: str
) -> Resolved:
    if len(shape) != len(image) + 1:
        raise LayerError(
            f"layers: layer {name!r} outputs shape {shape}, not tokens (N, T, C) as stated "
            f"({stated!r}); " + _how_to_state(name)
        )
    tokens = shape[1]
    given = stated if isinstance(stated, Tokens) else Tokens()
    if given.grid is not None and not _fits(given.grid, image):
        raise LayerError(
            f"layers: the stated grid {given.grid} of layer {name!r} is not the input's "
            f"{tuple(image)} seen at one stride (a transposed grid?); " + _how_to_state(name)
        )
    prefix, grid = _model_tokens(model, image)
    # stated fields are fixed; unstated ones come from the model where it says, and are
    # searched only where it does not (or, when nothing is stated, where its word fails,
    # e.g. the patch embedding before the prefix tokens are added)
    first = Tokens(given.prefix if given.prefix is not None else prefix, given.grid or grid)
    specs = [first]
    if given == Tokens():
        specs += [Tokens(None, grid), Tokens(prefix, None), Tokens()]
    for spec in specs:
        candidates = _token_candidates(tokens, image, spec)
        if len(candidates) == 1:
            return candidates[0]
    candidates = _token_candidates(tokens, image, first)
    if not candidates:
        raise LayerError(
            f"layers: layer {name!r} outputs {tokens} tokens {shape}, which is no prefix "
            f"(<= {_MAX_PREFIX} tokens) plus a patch grid of the input's {tuple(image)} "
            f"(stated {given}, from the model: prefix {prefix}, grid {grid}); "
            + _how_to_state(name)
        )
    listed = ", ".join(f"prefix {c.prefix} + grid {c.grid}" for c in candidates[:4])
    raise LayerError(
        f"layers: cannot tell how the {tokens} tokens of layer {name!r} {shape} are laid "
        f"out for an input of spatial size {tuple(image)}: {listed}"
        f"{', ...' if len(candidates) > 4 else ''} all fit; " + _how_to_state(name)
    )
