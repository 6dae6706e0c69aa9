"""Checks read once per call: their flags are computed on the device, read at the end.

On a GPU every read of a device value by the host (``.item()``, ``bool(t)``, ``nonzero``,
``.tolist()``) waits for every queued kernel: the device then idles while the host issues
the rest of the call. So a check (a non-finite score, a zero gradient, a constant map)
computes its flags on the device and hands them here with what to do about them; every
flag of a call is read in one ``.tolist()`` after the call's last kernel is queued, and the
actions then run in the order the checks were made: the first that raises wins, as if each
check had been made eagerly. An action reads nothing more from the device unless it
raises (the error path may read what it names).

A call opens ``deferred_checks()``; nested calls (an explainer wrapped by another, the
passes of one call) join the outermost one, which reads the flags when it ends. An error
raised in between (the model's own, a layer that never ran) comes after the checks made
before it: those are read first, and the first of them that raises is raised instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import torch

from ._transfer import to_device

Action = Callable[[list[float]], None]
"""What to do about a check: called with its values (flattened, as Python numbers: a bool
flag reads as 0 or 1, a value of a float tensor as itself, so a check may hand over the
values it judges, a score say, and decide on the host with ``math.isfinite``)."""

_local = threading.local()


class Deferred:
    """The checks of one call, read once by [`settle`][normgrad._deferred.Deferred.settle]."""

    def __init__(self) -> None:
        self._checks: list[tuple[torch.Tensor | None, Action]] = []

    def add(self, flags: torch.Tensor | None, action: Action) -> None:
        """Run ``action`` on ``flags`` (any shape; bool, or the float values to judge) once
        they are read; ``None``: no flags (an action, a warning say, kept in its place among
        the checks)."""
        self._checks.append((None if flags is None else flags.detach().reshape(-1), action))

    def _read(self) -> list[float]:
        tensors = [f for f, _ in self._checks if f is not None]
        if not tensors:
            return []
        # on the device of the call (flags made on the host join them there: a copy that
        # waits for nothing, where the other way round each would wait)
        device = next((t.device for t in tensors if t.device.type != "cpu"), tensors[0].device)
        # one tensor of the widest dtype among them (bools read as 0 and 1, values kept)
        together = torch.cat([to_device(t, device) for t in tensors])
        values: list[float] = together.tolist()  # the one read of the call
        return values

    def settle(self) -> None:
        """Read every flag at once, then run the actions in order."""
        self._run(self._read())

    def _run(self, values: list[float]) -> None:
        checks, self._checks = self._checks, []
        start = 0
        for flags, action in checks:
            stop = start + (0 if flags is None else flags.numel())
            action(values[start:stop])
            start = stop


def current() -> Deferred | None:
    """The checks of the call running in this thread, if one is open."""
    found: Deferred | None = getattr(_local, "deferred", None)
    return found


class deferred_checks:  # used as a function: ``with deferred_checks() as checks``
    """Open the checks of a call (or join the one open in this thread); the outermost reads
    them when it ends."""

    def __enter__(self) -> Deferred:
        outer = current()
        self._owner = outer is None
        if outer is not None:
            return outer
        self._deferred = Deferred()
        _local.deferred = self._deferred
        return self._deferred

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self._owner:
            return
        _local.deferred = None
        if error is None:
            self._deferred.settle()
            return
        if not isinstance(error, Exception):
            return
        try:
            values = self._deferred._read()
        except Exception:  # the device cannot be read: the error raised stays in front
            return
        try:  # a check made before the error raises first, if any fails
            self._deferred._run(values)
        except Exception as raised:
            raise raised from None
