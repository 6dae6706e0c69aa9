"""What makes an evaluation's maps: the explainers' arguments and the model's weights.

[`evaluate`][normgrad.evaluate] writes these fingerprints into a records file and exchanges
them between ranks, and refuses a resume or a rank whose fingerprint differs, naming what
differs. They are JSON values, compared for equality:

- an explainer: its class and every attribute (the model aside, which is checked to be the
  evaluated one), found generically: numbers and strings by value, tensors and arrays by
  shape, dtype and the sha256 of their bytes, callables by qualified name, dataclasses,
  named tuples and plain objects by their fields, a submodule of the model by its name,
  nested explainers (SmoothGrad's) the same way. ``batch_size`` is left out: it bounds
  memory and the maps do not depend on it.
- the model: its class; per submodule its class, the settings it prints and its public
  attributes (so another activation, padding mode, eps or number of heads is told apart);
  per parameter, buffer and tensor attribute its shape, dtype and an exact integer
  checksum of its bytes computed on its device (read once for all tensors).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import InvalidArgumentError
from .._explainers.base import Explainer
from .._explainers.center import CenterMap
from .checksum import checksum

_IGNORED = frozenset({"batch_size"})  # memory bounds: the maps do not depend on them


def unwrap(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile``, ``DataParallel`` or ``DistributedDataParallel``
    wrapper runs (the model itself when it is not wrapped)."""
    seen: set[int] = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(
            model, (nn.DataParallel, nn.parallel.DistributedDataParallel)
        ):
            inner = model.module
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def _explainers_in(explainer: Explainer, path: str) -> Iterator[tuple[str, Explainer]]:
    """``explainer`` and the explainers it wraps (SmoothGrad's), with their paths."""
    yield path, explainer
    for name, value in vars(explainer).items():
        if isinstance(value, Explainer):
            yield from _explainers_in(value, f"{path}.{name}")


def check_owner(name: str, explainer: Explainer, model: nn.Module) -> None:
    """Refuse an explainer (or an explainer it wraps) built on another model than ``model``:
    its maps would be the other model's. The centre map uses no model; an explainer
    without a ``model`` attribute cannot be checked."""
    target = unwrap(model)
    for path, e in _explainers_in(explainer, f"explainers[{name!r}]"):
        own = getattr(e, "model", None)
        if isinstance(e, CenterMap) or not isinstance(own, nn.Module):
            continue
        if unwrap(own) is not target:
            raise InvalidArgumentError(
                f"{path}: {e!r} was built on another model ({type(own).__name__} object at "
                f"{id(own):#x}) than the model evaluated ({type(model).__name__} object at "
                f"{id(model):#x}); its maps would be that other model's. Build the "
                "explainers of the model you evaluate, e.g. "
                "{'NormGrad': normgrad.NormGrad(model, ...)} for each model"
            )


def _qualname(value: Any) -> str:
    kind = value if isinstance(value, type) else type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _bytes_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).view(np.uint8).tobytes()).hexdigest()


_COMPOUND = object()  # a value holding other values


def _atom(value: Any) -> Any:
    """``value`` as a JSON value when it holds no other value (text, numbers, tensors,
    arrays, torch's types, generators), else ``_COMPOUND``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"enum": _qualname(value), "name": value.name}
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else {"float": repr(number)}
    if isinstance(value, torch.Tensor):
        data = value.detach().to("cpu").contiguous().reshape(-1)
        raw = data.view(torch.uint8).numpy() if data.numel() else np.zeros(0, np.uint8)
        return {
            "tensor": list(value.shape),
            "dtype": str(value.dtype),
            "sha256": _bytes_digest(raw),
        }
    if isinstance(value, np.ndarray):
        return {
            "array": list(value.shape),
            "dtype": str(value.dtype),
            "sha256": _bytes_digest(value),
        }
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value)
    if isinstance(value, torch.Generator):
        return {"generator": value.initial_seed()}
    return _COMPOUND


def _value(value: Any, model: nn.Module, names: Mapping[int, str], seen: set[int]) -> Any:
    """``value`` as a JSON value that is equal exactly when the value is the same."""
    atom = _atom(value)
    if atom is not _COMPOUND:
        return atom
    if isinstance(value, nn.Module):
        if unwrap(value) is unwrap(model):
            return "<the model>"
        if id(value) in names:
            return {"module": names[id(value)]}  # its weights are the model's
        return {"module": _qualname(value), "weights": model_fingerprint(value)}
    if id(value) in seen:
        return {"cycle": _qualname(value)}
    seen = seen | {id(value)}
    if isinstance(value, Explainer):
        return explainer_fingerprint(value, model, names, seen)
    return _compound(value, lambda v: _value(v, model, names, seen))


def _compound(value: Any, inner: Callable[[Any], Any]) -> Any:
    """``value``, holding other values (each read by ``inner``), as a JSON value."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return {"type": _qualname(value), **{f: inner(getattr(value, f)) for f in value._fields}}
    if isinstance(value, (list, tuple)):
        return [inner(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"set": sorted((inner(v) for v in value), key=repr)}
    if isinstance(value, Mapping):
        return {"mapping": [[inner(k), inner(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: inner(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": _qualname(value), **fields}
    if isinstance(value, functools.partial):
        return {
            "partial": inner(value.func),
            "args": inner(value.args),
            "keywords": inner(value.keywords),
        }
    if isinstance(value, type):
        return {"class": _qualname(value)}
    if callable(value) and hasattr(value, "__qualname__"):
        module = getattr(value, "__module__", None) or ""
        bound = getattr(value, "__self__", None)
        out: dict[str, Any] = {"callable": f"{module}.{value.__qualname__}"}
        if (
            bound is not None
            and not isinstance(bound, type)
            and type(bound).__module__ != "builtins"
        ):
            out["of"] = inner(bound)
        return out
    if hasattr(value, "__dict__"):
        return {"type": _qualname(value), **{k: inner(v) for k, v in sorted(vars(value).items())}}
    text = repr(value)
    return {"type": _qualname(value), "repr": None if " at 0x" in text else text}


def explainer_fingerprint(
    explainer: Explainer,
    model: nn.Module,
    names: Mapping[int, str] | None = None,
    seen: set[int] | None = None,
) -> dict[str, Any]:
    """Everything about ``explainer`` that changes its maps, as a JSON object: its class and
    every attribute but ``model`` and ``batch_size``."""
    if names is None:
        names = {id(m): n for n, m in unwrap(model).named_modules()}
    seen = (seen or set()) | {id(explainer)}
    out: dict[str, Any] = {"type": _qualname(explainer)}
    for key, value in sorted(vars(explainer).items()):
        if key == "model" or key in _IGNORED:
            continue
        out[key] = _value(value, model, names, seen)
    return out


_PLAIN = (type(None), bool, numbers.Number, str, enum.Enum, torch.dtype, type)
_SKIPPED = frozenset({"training", "name_or_path"})  # the mode; where weights were loaded from


def _setting(value: Any) -> bool:
    """Whether a module's attribute is a setting: a number, string, enum, dtype, class,
    function (with its bound arguments: ``functools.partial``) or a tuple or list of them
    and of tensors (bookkeeping, such as caches, counters of warnings and configuration
    objects, lives in dicts and other objects: left out)."""
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, torch.Tensor) or _setting(v) for v in value)
    if isinstance(value, functools.partial):
        return _setting(value.func) and _setting([*value.args, *value.keywords.values()])
    plain_callable = callable(value) and hasattr(value, "__qualname__")
    return isinstance(value, _PLAIN) or (plain_callable and not isinstance(value, nn.Module))


def _structure(
    model: nn.Module, tensors: list[tuple[str, torch.Tensor]]
) -> dict[str, dict[str, Any]]:
    """Every submodule of ``model`` by name: its class, its ``extra_repr()`` (the settings
    PyTorch's modules print: padding mode, eps, negative slope, ...) and its public
    attributes that are settings (``num_heads``, ``scale``, a function it calls, ...;
    ``_setting``). A tensor attribute is added to ``tensors`` (checksummed with the
    weights, ``"<module>.<attribute>"``, ``"<module>.<attribute>[i]"`` in a tuple or
    list); a device by its type (ranks hold the model on
    ``cuda:0``, ``cuda:1``, ...). The mode (``training``) is left out: the explainers run
    the model in eval mode."""
    names = {id(m): n for n, m in model.named_modules()}
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        attributes: dict[str, Any] = {}
        for key, value in sorted(vars(module).items()):
            if key.startswith("_") or key in _SKIPPED:
                continue
            where = f"{name}.{key}" if name else key
            if isinstance(value, torch.Tensor):
                tensors.append((where, value))
                attributes[key] = "<tensor>"
            elif isinstance(value, (tuple, list)) and _setting(value):  # tensors among them
                found = [isinstance(v, torch.Tensor) for v in value]
                tensors += [(f"{where}[{i}]", v) for i, v in enumerate(value) if found[i]]
                attributes[key] = [
                    "<tensor>" if found[i] else _value(v, model, names, {id(module)})
                    for i, v in enumerate(value)
                ]
            elif isinstance(value, torch.device):
                attributes[key] = {"device": value.type}
            elif _setting(value):
                attributes[key] = _value(value, model, names, {id(module)})
        out[name] = {
            "type": _qualname(module),
            "settings": module.extra_repr(),
            "attributes": attributes,
        }
    return out


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """``model``'s class (a wrapper's, ``torch.compile``'s or ``DataParallel``'s, unwrapped),
    every submodule's class and settings (``_structure``) and every parameter, buffer and
    tensor attribute by name: ``[shape, dtype, checksum]``.

    The checksums are computed on each tensor's device and read once per device; the cost is
    a few element-wise passes over the weights' bytes, far less than one batch's passes."""
    inner = unwrap(model)
    tensors = list(inner.named_parameters()) + list(inner.named_buffers())
    modules = _structure(inner, tensors)
    by_device: dict[torch.device, list[tuple[int, torch.Tensor]]] = {}
    for i, (_, tensor) in enumerate(tensors):
        sums = checksum(tensor)
        by_device.setdefault(sums.device, []).append((i, sums))
    values: dict[int, int] = {}
    for pairs in by_device.values():  # one read per device
        read = torch.stack([s for _, s in pairs]).tolist()
        values.update((i, -1 if a < 0 else a << 31 | b) for (i, _), (a, b) in zip(pairs, read))
    weights = {
        name: [list(t.shape), str(t.dtype).replace("torch.", ""), values[i]]
        for i, (name, t) in enumerate(tensors)
    }
    return {"type": _qualname(inner), "modules": modules, "tensors": weights}


Path = tuple[Any, ...]


def differences(ours: Any, theirs: Any, path: Path = ()) -> list[Path]:
    """The paths (keys and indices) at which two JSON values differ."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out: list[Path] = []
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            if key not in ours or key not in theirs:
                out.append((*path, key))
            else:
                out += differences(ours[key], theirs[key], (*path, key))
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        pairs = enumerate(zip(ours, theirs))
        return [d for i, (a, b) in pairs for d in differences(a, b, (*path, i))]
    return [] if ours == theirs else [path]


def _at(value: Any, path: Path) -> Any:
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _module_difference(path: Path, ours: Any, theirs: Any, other: str) -> str:
    """A submodule's difference, as ``name`` (``"the model itself"`` for the root) and the
    field that differs, with both values when they are short."""
    if len(path) < 3:
        return "all"
    text = str(path[2]) or "the model itself"
    if len(path) > 3:
        field = ".".join(str(k) for k in path[4:]) if path[3] == "attributes" else path[3]
        a, b = _at(ours, path), _at(theirs, path)
        text += f" {field}" + (
            f" ({a!r} here, {b!r} in {other})" if len(repr(a)) + len(repr(b)) < 100 else ""
        )
    return text


def describe_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any], other: str) -> str:
    """What differs between two evaluations' settings, for a message: a setting by its name,
    an explainer's attribute as ``explainers['name'].attribute`` (with both values when they
    are short), the model's submodules as ``model modules (name field (values))``, its
    weights as ``model weights (tensor names)``. ``other`` names
    where ``theirs`` comes from (``"the file"``, ``"rank 1"``)."""
    found = differences(dict(ours), dict(theirs))
    weights: list[str] = []
    modules: list[str] = []
    kind = ""
    shown: list[str] = []
    for path in found:
        if path[0] == "model":
            if path[1:2] == ("type",):
                kind = f"model class ({_at(ours, path)} here, {_at(theirs, path)} in {other})"
            weights += [str(path[2])] if path[1:2] == ("tensors",) and len(path) > 2 else []
            if path[1:2] == ("modules",):
                modules.append(_module_difference(path, ours, theirs, other))
            continue
        if path[0] != "explainers" or len(path) < 2:
            shown.append(str(path[0]))
            continue
        text = f"explainers[{path[1]!r}]" + "".join(
            f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[2:]
        )
        a, b = _at(ours, path), _at(theirs, path)
        if len(path) > 2 and len(repr(a)) + len(repr(b)) < 80:
            text += f" ({a!r} here, {b!r} in {other})"
        shown.append(text)
    if kind:
        shown.append(kind)
    if modules:
        names = list(dict.fromkeys(modules))
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        shown.append(f"model modules ({listed})")
    if any(p[0] == "model" and p[1:2] not in (("type",), ("modules",)) for p in found):
        names = list(dict.fromkeys(weights))
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        shown.append(f"model weights ({listed})" if listed else "model weights")
    return ", ".join(dict.fromkeys(shown))
