"""Hook handles and model modes: everything put on a model is taken off again."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .._errors import InvalidArgumentError

# Which thread holds each module (by id) and how many times: explanations that touch a
# common module (one model, or two models sharing a backbone) run one at a time. And what
# each waiting thread waits for (module ids), so that a wait that would never end is seen.
_CLAIMS: dict[int, tuple[int, int]] = {}
_WAITING: dict[int, set[int]] = {}
_CLAIMS_CHANGED = threading.Condition()


def _owners(thread: int, ids: Iterable[int]) -> set[int]:
    """The threads other than ``thread`` that hold any of the modules ``ids``."""
    held = (_CLAIMS.get(i) for i in ids)
    return {h[0] for h in held if h is not None and h[0] != thread}


def _waits_for_me(me: int, ids: Iterable[int]) -> int | None:
    """A thread holding some of ``ids`` that waits, itself or through other waiting
    threads, for modules ``me`` holds: waiting for it would never end. ``None`` if none."""
    for first in _owners(me, ids):
        seen: set[int] = set()
        stack = [first]
        while stack:
            thread = stack.pop()
            if thread == me:
                return first
            if thread not in seen:
                seen.add(thread)
                stack.extend(_owners(thread, _WAITING.get(thread, ())))
    return None


def _cycle_error(
    me: int, other: int, ids: set[int], modules: Sequence[nn.Module], model: nn.Module | None
) -> InvalidArgumentError:
    names = {id(m): repr(n) for n, m in model.named_modules()} if model is not None else {}
    names[id(model)] = "the model itself"
    contested = [
        names.get(id(m), type(m).__name__)
        for m in modules
        if id(m) in ids and _CLAIMS.get(id(m), (me, 0))[0] == other
    ]
    what = f"{type(model).__name__} " if model is not None else ""
    return InvalidArgumentError(
        f"model: explaining {what}from this thread, inside a call that holds other modules "
        f"(a call nested in a target callable or a forward), would wait for module(s) "
        f"{', '.join(contested[:4])}{', ...' if len(contested) > 4 else ''} held by another "
        "thread, which itself waits for modules this thread holds: both would wait forever. "
        "Explain the inner model outside the outer call (before it, or after it), or nest "
        "the calls in the same order in every thread"
    )


@contextlib.contextmanager
def claimed(modules: Sequence[nn.Module], model: nn.Module | None = None) -> Iterator[None]:
    """Hold every module of ``modules`` (of ``model``, named in errors) for this thread
    until the block ends.

    All or nothing: a thread waits, holding nothing new, until none of the modules is held
    by another thread, then takes them all at once. So two calls that share a module run
    one after the other, and calls on disjoint models run in parallel. A thread may claim
    modules it holds again (a target callable that explains the same model, or another
    model sharing a backbone, from inside a call). A nested claim may have to wait while
    its thread holds the outer call's modules: where the thread it waits for waits, itself
    or through others, for modules this thread holds (two threads nesting calls on two
    models in opposite orders), it would wait forever, and
    [`InvalidArgumentError`][normgrad.InvalidArgumentError] is raised instead, in the
    thread whose wait would close the cycle (the other call then goes on). A claim never
    waits otherwise than for a call that can end.
    """
    me = threading.get_ident()
    ids = {id(m) for m in modules}  # ``modules`` keeps them alive, so the ids stay theirs
    with _CLAIMS_CHANGED:
        try:
            while _owners(me, ids):
                other = _waits_for_me(me, ids)
                if other is not None:
                    raise _cycle_error(me, other, ids, modules, model)
                _WAITING[me] = ids
                _CLAIMS_CHANGED.wait()
        finally:
            _WAITING.pop(me, None)
        for i in ids:
            _CLAIMS[i] = (me, _CLAIMS.get(i, (me, 0))[1] + 1)
    try:
        yield
    finally:
        with _CLAIMS_CHANGED:
            for i in ids:
                owner, count = _CLAIMS[i]
                if count == 1:
                    del _CLAIMS[i]
                else:
                    _CLAIMS[i] = (owner, count - 1)
            _CLAIMS_CHANGED.notify_all()


@contextlib.contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and enable grad; restore every module's flag afterwards.

    Calls are serialised per module (``claimed``): every module of ``model`` (the ones put
    in eval mode, and so every layer that can be hooked) is held for the call, so two
    threads explaining one model, or two models that share a backbone, never see each
    other's eval mode, hooks or guided ReLUs; models with no module in common run in
    parallel; a thread may nest calls, and a nested call that would wait forever (two
    threads nesting calls in opposite orders) raises instead. Works inside ``torch.no_grad()`` and
    ``torch.inference_mode()`` blocks of the caller.
    """
    modules = list(model.modules())
    with claimed(modules, model):
        flags = [(m, m.training) for m in modules]
        try:
            model.eval()
            with torch.inference_mode(False), torch.enable_grad():
                yield
        finally:
            for module, training in flags:
                module.training = training


class HookSet:
    """Owns a set of hook handles; removal is idempotent and happens in ``__exit__``."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def add(self, handle: RemovableHandle) -> None:
        self._handles.append(handle)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
