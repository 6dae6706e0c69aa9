"""Hook handles and model modes: everything put on a model is taken off again."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one re-entrant lock of ``model``: explanations of one model run one at a time.

    Re-entrant, so a thread that holds it may explain the same model again (a target
    callable that itself explains). The lock lives as long as the model does.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and enable grad; restore every module's flag afterwards.

    Calls on the same model are serialised (``model_lock``): two threads explaining
    one model never see each other's eval mode, hooks or guided ReLUs; a thread may nest
    calls. Works inside ``torch.no_grad()`` and ``torch.inference_mode()`` blocks of the
    caller.
    """
    with model_lock(model):
        flags = [(m, m.training) for m in model.modules()]
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
