"""Detecting a layer's output layout from its shape, the input's size and the model.

A reading is taken when it is the only one that fits the input's geometry; the model says
what shapes cannot (a ViT's patch size and prefix tokens: torchvision, timm and Hugging
Face models, see ``huggingface``), and where a layer's output
reads both ways, how the output was made during the forward pass settles it
(``layout_trace``), in any model; otherwise a
[`LayerError`][normgrad.LayerError] asks the user to state the layout (see ``layouts``). A
reading that does not fit is never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .._errors import LayerError
from .huggingface import huggingface_tokens
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


def _model_tokens(
    model: nn.Module, image: Sequence[int], tokens: int
) -> tuple[int | None, tuple[int, ...] | None]:
    """Prefix count and patch grid of ``tokens`` tokens as the model states them (Hugging
    Face ``transformers``, timm, torchvision ViT)."""
    stated = huggingface_tokens(model, image, tokens)
    if stated is not None:
        return stated
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

    ``made`` is the layout the forward pass made ``output`` in (``layout_trace``), if known:
    it settles a shape that reads both ways (in any model: whether the model looks like a
    plain CNN is never taken for it, since a ``forward`` may permute with no module to say).

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
    if isinstance(stated, str) and stated in readings:
        return _resolve_stated(shape, readings, image, stated, name)
    return _resolve_detected(shape, readings, image, name, made)


def _resolve_stated(
    shape: tuple[int, ...],
    readings: dict[str, tuple[int, ...]],
    image: Sequence[int],
    stated: str,
    name: str,
) -> Resolved:
    """The stated channels-first or channels-last layout, when its reading fits the input
    (or the other reading does not fit either)."""
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


def _resolve_detected(
    shape: tuple[int, ...],
    readings: dict[str, tuple[int, ...]],
    image: Sequence[int],
    name: str,
    made: str | None,
) -> Resolved:
    """The one channels-first or channels-last reading that fits the input, or the one
    the forward pass made where both fit."""
    # a reading at one integer stride first, then one that fits up to rounding; when both
    # read well (channels as many as the positions), the way the output was made settles
    # it, and nothing else does
    for test in (_exact, _fits):
        fitting = [kind for kind, spatial in readings.items() if test(spatial, image)]
        if len(fitting) == 1:
            return Resolved(fitting[0])
        if len(fitting) == 2 and made is not None:
            return Resolved(made)
    plausible = [kind for kind, spatial in readings.items() if _inside(spatial, image)]
    if not fitting and len(plausible) == 1:
        return Resolved(plausible[0])
    which = " and ".join(f"{kind} (spatial {readings[kind]})" for kind in (fitting or plausible))
    unseen = (
        " (the forward pass does not show how it was made: no convolution, norm, linear "
        "layer or permutation leads to it through calls that are followed; an einsum is not)"
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
    prefix, grid = _model_tokens(model, image, tokens)
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
