"""Hook handles and model modes: everything put on a model is taken off again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


@contextlib.contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and enable grad; restore every module's flag afterwards.

    Works inside ``torch.no_grad()`` and ``torch.inference_mode()`` blocks of the caller.
    """
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
