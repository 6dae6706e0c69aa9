"""Snapshots of everything an explainer could leave changed on a model (tests only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_globals

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


@dataclass
class ModelSnapshot:
    hooks: list[tuple[str, str, int]]
    global_hooks: list[int]
    training: list[tuple[str, bool]]
    requires_grad: list[tuple[str, bool]]
    grads: list[tuple[str, torch.Tensor | None]]
    tensor_hooks: list[tuple[str, int]]
    state: dict[str, torch.Tensor]
    modules: list[tuple[str, str, int]]
    inplace: list[tuple[str, Any]]
    eval_output: torch.Tensor


def snapshot(model: nn.Module, probe: torch.Tensor) -> ModelSnapshot:
    """Record hooks, flags, gradients, state and the eval-mode output on ``probe``."""
    hooks = [
        (name, attr, len(getattr(m, attr, {}) or {}))
        for name, m in model.named_modules()
        for attr in _HOOK_DICTS
    ]
    global_hooks = [len(getattr(module_globals, attr, {})) for attr in _GLOBAL_HOOK_DICTS]
    training = [(name, m.training) for name, m in model.named_modules()]
    requires_grad = [(name, p.requires_grad) for name, p in model.named_parameters()]
    grads = [
        (name, None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()
    ]
    tensor_hooks = [(name, len(p._backward_hooks or {})) for name, p in model.named_parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [(name, type(m).__name__, id(m)) for name, m in model.named_modules()]
    inplace = [(name, getattr(m, "inplace", None)) for name, m in model.named_modules()]
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        eval_output = model(probe).clone()
    for m, flag in flags:
        m.training = flag
    return ModelSnapshot(
        hooks,
        global_hooks,
        training,
        requires_grad,
        grads,
        tensor_hooks,
        state,
        modules,
        inplace,
        eval_output,
    )


def assert_unchanged(before: ModelSnapshot, after: ModelSnapshot) -> None:
    assert after.hooks == before.hooks
    assert after.global_hooks == before.global_hooks
    assert after.training == before.training
    assert after.requires_grad == before.requires_grad
    assert after.tensor_hooks == before.tensor_hooks
    assert after.modules == before.modules
    assert after.inplace == before.inplace
    assert [n for n, _ in after.grads] == [n for n, _ in before.grads]
    for (name, g_after), (_, g_before) in zip(after.grads, before.grads):
        if g_before is None:
            assert g_after is None, f"param.grad of {name} was written"
        else:
            assert g_after is not None and torch.equal(g_after, g_before), name
    assert after.state.keys() == before.state.keys()
    for key in before.state:
        assert torch.equal(after.state[key], before.state[key]), key
    assert torch.equal(after.eval_output, before.eval_output)
