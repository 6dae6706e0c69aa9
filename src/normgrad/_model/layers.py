"""Finding the layers of a model: by dotted name or as modules, with suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Union

from torch import nn

from .._errors import ArgumentTypeError, LayerError, describe

LayerSpec = Union[str, nn.Module]
"""A layer given by its dotted name in the model (``"layer4.2"``) or as the module itself."""

Layers = Union[LayerSpec, Sequence[LayerSpec]]
"""One layer or several (a [`LayerSpec`][normgrad.LayerSpec] or a sequence of them); several
layers are fused by the geometric mean of their maps."""


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model: expected a torch.nn.Module, got {describe(model)}")
    return model


def _suggest(name: str, names: Sequence[str], model: nn.Module) -> str:
    # the same layer under a wrapper's prefix first: torch.compile ('_orig_mod.'),
    # DataParallel and DistributedDataParallel ('module.')
    wrapped = [n for n in names if n.endswith("." + name)]
    close = (wrapped or difflib.get_close_matches(name, names, n=3, cutoff=0.5))[:3]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    shown = [n for n in names if n.count(".") <= 1][:20]
    more = ", ..." if len(shown) < len(names) else ""
    return (
        f"layer {name!r} not found in {type(model).__name__}{hint} "
        f"(available: {', '.join(shown)}{more})"
    )


def resolve_layers(
    model: nn.Module, layers: Layers, argument: str = "layers"
) -> list[tuple[str, nn.Module]]:
    """Resolve ``layers`` to a list of ``(dotted name, module)`` pairs, in the given order."""
    specs: Sequence[object]
    if isinstance(layers, (str, nn.Module)):
        specs = [layers]
    elif isinstance(layers, Sequence):
        specs = list(layers)
        if not specs:
            raise LayerError(f"{argument}: expected at least one layer, got an empty sequence")
    else:
        raise ArgumentTypeError(
            f"{argument}: expected a module name, an nn.Module or a sequence of them, "
            f"got {describe(layers)}"
        )
    named = dict(model.named_modules())
    names_by_id = {id(m): n for n, m in named.items()}
    resolved: list[tuple[str, nn.Module]] = []
    for spec in specs:
        if isinstance(spec, str):
            if spec not in named or spec == "":
                raise LayerError(_suggest(spec, [n for n in named if n], model))
            resolved.append((spec, named[spec]))
        elif isinstance(spec, nn.Module):
            if id(spec) not in names_by_id:
                raise LayerError(
                    f"{argument}: the module {type(spec).__name__} is not a submodule of "
                    f"{type(model).__name__}"
                )
            resolved.append((names_by_id[id(spec)] or type(spec).__name__, spec))
        else:
            raise ArgumentTypeError(
                f"{argument}: expected each layer to be a module name (str) or an nn.Module, "
                f"got {describe(spec)}"
            )
    seen: set[str] = set()
    for name, _ in resolved:
        if name in seen:
            raise LayerError(f"{argument}: layer {name!r} is given more than once")
        seen.add(name)
    return resolved


def first_conv(model: nn.Module) -> tuple[str, nn.modules.conv._ConvNd] | None:
    """The name and module of the first convolution registered in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return name, module
    return None


def single_layer(
    model: nn.Module, layer: LayerSpec, argument: str = "layer"
) -> tuple[str, nn.Module]:
    """Resolve exactly one layer (for methods such as Grad-CAM that read one layer)."""
    layers = resolve_layers(model, layer, argument=argument)
    if len(layers) != 1:
        raise LayerError(f"{argument}: expected one layer, got {len(layers)}")
    return layers[0]
