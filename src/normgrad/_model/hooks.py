"""Hook handles and model modes: everything put on a model is taken off again."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

# Which thread holds each module (by id) and how many times: explanations that touch a
# common module (one model, or two models sharing a backbone) run one at a time.
_CLAIMS: dict[int, tuple[int, int]] = {}
_CLAIMS_CHANGED = threading.Condition()


@contextlib.contextmanager
def claimed(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Hold every module of ``modules`` for this thread until the block ends.

    All or nothing: a thread waits, holding nothing new, until none of the modules is held
    by another thread, then takes them all at once. So two calls that share a module run
    one after the other, calls on disjoint models run in parallel, and two threads can
    never each hold part of what the other waits for (no lock order to get wrong). A
    thread may claim modules it holds again (a target callable that explains the same
    model, or another model sharing a backbone, from inside a call).
    """
    me = threading.get_ident()
    ids = {id(m) for m in modules}  # ``modules`` keeps them alive, so the ids stay theirs
    with _CLAIMS_CHANGED:
        while any(_CLAIMS.get(i, (me, 0))[0] != me for i in ids):
            _CLAIMS_CHANGED.wait()
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
    parallel; a thread may nest calls. Works inside ``torch.no_grad()`` and
    ``torch.inference_mode()`` blocks of the caller.
    """
    modules = list(model.modules())
    with claimed(modules):
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
