"""Literal reference of NormGrad on token layers (vision transformers): the tokens and
their gradients read by hand from the model, laid out on the patch grid, then the
per-location reference of ``maps``."""

from __future__ import annotations

import torch
from torch import nn

from .maps import reference_normgrad_map


def reference_token_maps(
    model: nn.Module,
    x: torch.Tensor,
    layers: list[str],
    target: torch.Tensor,
    prefix: int,
    grid: tuple[int, int],
) -> list[torch.Tensor]:
    """conv3x3 NormGrad maps ``(N, 1, *grid)`` of token layers ``(N, prefix + h * w, C)``, by
    hand: forward hooks keep the tokens, the prefix tokens are dropped, the rest read
    row-major as the patch ``grid`` ``(h, w)``; the model's modes are restored."""
    modules = dict(model.named_modules())
    kept: dict[str, torch.Tensor] = {}
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: kept.__setitem__(n, o))
        for n in layers
    ]
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x)
            score = logits.gather(1, target[:, None]).sum()
            grads = torch.autograd.grad(score, [kept[n] for n in layers])
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag

    def patches(t: torch.Tensor) -> torch.Tensor:
        n, _, c = t.shape
        return t[:, prefix:].reshape(n, *grid, c).permute(0, 3, 1, 2).detach()

    return [
        reference_normgrad_map(patches(kept[n]), patches(g), "conv", 3)
        for n, g in zip(layers, grads)
    ]
