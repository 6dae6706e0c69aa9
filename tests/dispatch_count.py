"""The operators that synchronise the host with a CUDA device, listed once, and a counter
of them and of the non-view kernels a call dispatches (a dispatch mode, on any device).

What the CPU count sees: every aten operator dispatched (so ``.item()``, ``bool(t)``,
``int(t)``, ``float(t)`` as ``_local_scalar_dense``, ``nonzero``, boolean indexing, ...),
and, through a torch function mode, every ``.tolist()``, ``.numpy()`` and ``.cpu()`` call
on a tensor, and every blocking copy of host data to the device. A copy from the host to
a CUDA device without ``non_blocking=True`` (``torch.tensor(list, device=cuda)``,
``host_tensor.to(cuda)``) is a ``cudaMemcpyAsync`` followed by a
``cudaStreamSynchronize``: it waits for every queued kernel, as a read does. On the CPU
there is one device, so the count follows where each tensor was made: a tensor made inside
the call from host data (a factory without a device, ``torch.tensor(list)``,
``from_numpy``, ``.cpu()``, or an operator on such tensors alone) is on the host, every
other tensor (the call's inputs, the model, what a factory makes on a device) on the
device; a ``torch.tensor``/``as_tensor``/``asarray`` of host data with a device named, and
a ``.to``/``.cuda``/``copy_`` of a host tensor to the device, are counted
(``to_device``) unless ``non_blocking=True``. Reading a host tensor is free. What it
cannot see: a ``_to_copy``/``copy_`` from a CUDA tensor to the host (on the CPU there is no
other device, so such a copy is a ``.cpu()``/``.tolist()`` call or nothing), and a
synchronisation inside a kernel's own implementation (a CUDA kernel that reads a size
back).

Operators that make meta tensors (shapes without data, as the layout tracing probes a
permutation with) run no kernel on any device and are not counted.

``tests/test_synchronisations.py`` asserts the counts per call; ``benchmarks/run.py``
reports them beside the times (it imports this module, which needs torch alone).
"""

from __future__ import annotations

import contextlib
import os
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# The aten operators that synchronise the host with a CUDA device, listed once. Each must
# know a value the device computed before it can return: a Python scalar
# (``_local_scalar_dense``: .item(), bool(t), int(t), float(t); ``is_nonzero``; ``equal``),
# or the size of its output (``nonzero``, ``masked_select``, ``unique``,
# ``repeat_interleave`` without ``output_size``, boolean-mask indexing, ``bincount`` without
# ``minlength`` large enough, ``histc`` finding its range), or an error flag
# (``_linalg_check_errors``).
SYNCING = {
    aten._local_scalar_dense.default,
    aten.is_nonzero.default,
    aten.equal.default,
    aten.nonzero.default,
    aten.argwhere.default,
    aten.masked_select.default,
    aten.repeat_interleave.Tensor,
    aten.repeat_interleave.self_Tensor,
    aten.unique_dim.default,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_consecutive.default,
    aten.bincount.default,
    aten.histc.default,
    aten._linalg_check_errors.default,
}
# boolean-mask indexing: ``t[mask]``, ``t[mask] = v``
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}
# tensor methods that copy a tensor to the host (a synchronisation for a CUDA tensor)
HOST_READS = {"tolist", "numpy", "cpu"}


def _syncs(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if func in SYNCING:
        return not (
            func in (aten.repeat_interleave.Tensor, aten.repeat_interleave.self_Tensor)
            and kwargs.get("output_size") is not None
        )
    if func in _INDEXING and len(args) > 1:
        return any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        )
    return False


@dataclass
class Counts:
    """What one call dispatched."""

    syncs: Counter[str] = field(default_factory=Counter)
    kernels: int = 0
    # each synchronisation by where the library made it ("op @ file:line")
    sites: Counter[str] = field(default_factory=Counter)

    def add_sync(self, op: str) -> None:
        self.syncs[op] += 1
        self.sites[f"{op} @ {_library_line()}"] += 1

    @property
    def sync_count(self) -> int:
        return sum(self.syncs.values())


class _Dispatch(TorchDispatchMode):
    def __init__(self, counts: Counts, function: _Function) -> None:
        super().__init__()
        self.counts = counts
        self.function = function  # knows which tensors are on the host

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _syncs(func, args, kwargs) and not self._on_host(args):
            self.counts.add_sync(str(func.overloadpacket.__name__))
        elif not func.is_view and not _on_meta(out):
            self.counts.kernels += 1
        return out

    def _on_host(self, args: Any) -> bool:
        """Whether an operator reads host tensors alone (free: nothing waits)."""
        tensors = [t for t in _flat(list(args)) if isinstance(t, torch.Tensor)]
        return bool(tensors) and all(self.function.on_host(t) for t in tensors)


def _library_line() -> str:
    """The innermost line of the library on the stack (else of the caller)."""
    frames = traceback.extract_stack()[:-3]
    mine = [f for f in frames if f"{os.sep}normgrad{os.sep}" in f.filename]
    frame = (mine or frames)[-1]
    return f"{frame.filename.rsplit(os.sep + 'normgrad' + os.sep, 1)[-1]}:{frame.lineno}"


def _on_meta(out: Any) -> bool:
    """Whether an operator made meta tensors (shapes without data, as the layout tracing
    probes a permutation with): no kernel runs for them on any device."""
    made = [t for t in _flat(out) if isinstance(t, torch.Tensor)]
    return bool(made) and all(t.device.type == "meta" for t in made)


def _flat(out: Any) -> Iterator[Any]:
    if isinstance(out, (list, tuple)):
        for item in out:
            yield from _flat(item)
    else:
        yield out


# factories of a tensor: on the host unless given a device
_FACTORIES = {
    "tensor", "as_tensor", "asarray", "zeros", "ones", "full", "empty",
    "arange", "linspace", "logspace", "eye", "rand", "randn", "randint", "randperm",
    "scalar_tensor", "empty_strided",
}  # fmt: skip
# made from the data given (Python numbers, numpy arrays or a tensor): a copy when the
# device named differs from where the data are
_FROM_DATA = {"tensor", "as_tensor", "asarray"}


class _Function(TorchFunctionMode):
    """Host reads of device tensors, and blocking copies of host data to the device."""

    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts
        # made inside the call on the host (and the devices they report), by identity:
        # kept alive for the call's length, so that no other object takes their id
        self.host: dict[int, Any] = {}
        self.devices: dict[int, Any] = {}  # the devices reported by tensors on the device

    def on_host(self, item: Any) -> bool:
        return id(item) in self.host

    def add_host(self, made: Any) -> None:
        for item in _flat(made):
            self.host[id(item)] = item

    def names_device(self, device: Any) -> bool:
        """Whether a device argument names the device, not the host: the device of a tensor
        on the device, or a device other than the CPU named in the code; the device of a
        host tensor, and "cpu" named in the code (``torch.device("cpu")``), are the host."""
        if device is None or self.on_host(device):
            return False
        if id(device) in self.devices:
            return True
        try:
            return torch.device(device).type != "cpu"
        except (TypeError, RuntimeError):
            return True

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if tensor is not None and not self.on_host(tensor):
            if name in HOST_READS:
                self.counts.add_sync(name)
            elif name == "to" and self._targets_host(args, kwargs):
                self.counts.add_sync("cpu")  # ``.to("cpu")``: a copy to the host
        result = func(*args, **kwargs)
        if isinstance(result, torch.device) and self._device_of_device(tensor, args):
            self.devices[id(result)] = result
        copies = self._copies_to_device(name, tensor, args, kwargs)
        if copies:
            self.counts.add_sync("to_device")
        if not copies and self._made_on_host(name, tensor, args, kwargs, result):
            self.add_host(result)
        elif self.on_host(result):  # ``.to(device)`` of a host tensor is itself on the CPU
            del self.host[id(result)]
        return result

    def _device_of_device(self, tensor: torch.Tensor | None, args: Any) -> bool:
        """Whether a ``torch.device`` made by a call names the device: a device tensor's
        ``.device``, or ``torch.device(d)`` of such a device (not ``torch.device("cpu")``)."""
        if tensor is not None:
            return not self.on_host(tensor)
        return any(id(a) in self.devices for a in args)

    def _targets_host(self, args: Any, kwargs: dict[str, Any]) -> bool:
        """Whether ``.to`` names the host as where its result goes."""
        named = [a for a in [*args[1:], kwargs.get("device")] if isinstance(a, (str, torch.device))]
        return bool(named) and not any(self.names_device(a) for a in named)

    def _targets_device(self, name: str, args: Any, kwargs: dict[str, Any]) -> bool:
        """Whether a call puts its result on the device by name: ``device=`` naming it, or
        ``.to``/``.cuda`` towards it (a device, a name or a device tensor)."""
        if self.names_device(kwargs.get("device")) or name == "cuda":
            return True
        if name != "to":
            return False
        targets = [*args[1:], kwargs.get("other")]
        return any(
            (isinstance(t, torch.Tensor) and not self.on_host(t))
            or (isinstance(t, (str, torch.device)) and self.names_device(t))
            for t in targets
        )

    def _copies_to_device(
        self, name: str, tensor: torch.Tensor | None, args: Any, kwargs: dict[str, Any]
    ) -> bool:
        """Whether a call copies host data to the device, waiting for it."""
        positional = name in ("to", "copy_") and any(a is True for a in args[1:])
        if kwargs.get("non_blocking") or positional:
            return False  # also ``to(device, dtype, True)``, ``copy_(src, True)``
        if name in _FROM_DATA or name == "new_tensor":
            data = args[1] if name == "new_tensor" and len(args) > 1 else tensor
            if isinstance(data, torch.Tensor) and not self.on_host(data):
                return False  # already on the device
            if name == "new_tensor" and "device" not in kwargs:
                return tensor is not None and not self.on_host(tensor)
            return self.names_device(kwargs.get("device"))
        if name == "copy_" and tensor is not None:  # a host source into a device tensor
            source = args[1] if len(args) > 1 else kwargs.get("src")
            return self.on_host(source) and not self.on_host(tensor)
        if name in ("to", "cuda") and tensor is not None:
            return self.on_host(tensor) and self._targets_device(name, args, kwargs)
        return self._mixes(args, kwargs)

    def _mixes(self, args: Any, kwargs: dict[str, Any]) -> bool:
        """Whether a call takes device tensors with host tensors of one value or more (a
        0-dim host tensor is passed as a scalar): on CUDA, indexing copies such a host
        tensor to the device (``t[host_indices]``, ``t[:2] = host_values``), and most other
        operators refuse it."""
        tensors = [t for t in _flat([*args, *kwargs.values()]) if isinstance(t, torch.Tensor)]
        host = [self.on_host(t) for t in tensors]
        return any(host) and not all(host) and any(t.ndim and h for t, h in zip(tensors, host))

    def _made_on_host(
        self, name: str, tensor: torch.Tensor | None, args: Any, kwargs: dict[str, Any], out: Any
    ) -> bool:
        if isinstance(out, torch.device):  # the device of a host tensor is the host
            return tensor is not None and self.on_host(tensor)
        if name in ("cpu", "numpy"):  # from_numpy: not seen here, marked by counting()
            return True
        if self._targets_device(name, args, kwargs):
            return False
        if name == "to" and self._targets_host(args, kwargs):
            return True
        if name in _FACTORIES and (tensor is None or self.on_host(tensor)):
            return True
        inputs = [t for t in _flat([*args, *kwargs.values()]) if isinstance(t, torch.Tensor)]
        return bool(inputs) and all(self.on_host(t) for t in inputs)


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count the synchronisations and non-view kernels of what runs inside."""
    counts = Counts()
    function = _Function(counts)
    from_numpy = torch.from_numpy

    def host_from_numpy(array: Any) -> torch.Tensor:  # made on the host: reading it is free
        made = from_numpy(array)
        function.add_host(made)
        return made

    torch.from_numpy = host_from_numpy
    try:
        with function, _Dispatch(counts, function):
            yield counts
    finally:
        torch.from_numpy = from_numpy


def count(call: Callable[[], object]) -> Counts:
    with counting() as counts:
        call()
    return counts


def cuda_syncs(call: Callable[[], object]) -> int:
    """How many times ``call`` makes the host wait for the CUDA device, as CUDA's own
    debug mode reports it (its second run: the libraries' first-call work is not the
    call's); copies to and from the device included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing CUDA operation" in str(w.message) for w in seen)
