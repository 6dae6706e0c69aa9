"""The operators that synchronise the host with a CUDA device, listed once, and a counter
of them and of the non-view kernels a call dispatches (a dispatch mode, on any device).

What the CPU count sees: every aten operator dispatched (so ``.item()``, ``bool(t)``,
``int(t)``, ``float(t)`` as ``_local_scalar_dense``, ``nonzero``, boolean indexing, ...),
and, through a torch function mode, every ``.tolist()``, ``.numpy()`` and ``.cpu()`` call
on a tensor. What it cannot see: a ``_to_copy``/``copy_`` from a CUDA tensor to the host
(on the CPU there is no other device, so such a copy is a ``.cpu()``/``.tolist()`` call or
nothing), a synchronisation inside a kernel's own implementation (a CUDA kernel that
reads a size back), and a host-to-device copy from pageable memory (``torch.tensor(list,
device=cuda)``), which blocks the host but does not wait for queued kernels. A
``.tolist()`` of a tensor made on the host by design is counted too (conservatively).

Operators that make meta tensors (shapes without data, as the layout tracing probes a
permutation with) run no kernel on any device and are not counted.

``tests/test_synchronisations.py`` asserts the counts per call; ``benchmarks/run.py``
reports them beside the times (it imports this module, which needs torch alone).
"""

from __future__ import annotations

import contextlib
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

    @property
    def sync_count(self) -> int:
        return sum(self.syncs.values())


class _Dispatch(TorchDispatchMode):
    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _syncs(func, args, kwargs):
            self.counts.syncs[str(func.overloadpacket.__name__)] += 1
        elif not func.is_view and not _on_meta(out):
            self.counts.kernels += 1
        return out


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


class _Function(TorchFunctionMode):
    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts
        # tensors already on the host (made by .cpu() or from numpy): reading them is free
        self.host: list[torch.Tensor] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if name in HOST_READS and tensor is not None and not any(tensor is h for h in self.host):
            self.counts.syncs[name] += 1
        result = func(*args, **(kwargs or {}))
        if name in ("cpu", "from_numpy") and isinstance(result, torch.Tensor):
            self.host.append(result)
        return result


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count the synchronisations and non-view kernels of what runs inside."""
    counts = Counts()
    function = _Function(counts)
    from_numpy = torch.from_numpy

    def host_from_numpy(array: Any) -> torch.Tensor:  # made on the host: reading it is free
        made = from_numpy(array)
        function.host.append(made)
        return made

    torch.from_numpy = host_from_numpy
    try:
        with function, _Dispatch(counts):
            yield counts
    finally:
        torch.from_numpy = from_numpy


def count(call: Callable[[], object]) -> Counts:
    with counting() as counts:
        call()
    return counts
