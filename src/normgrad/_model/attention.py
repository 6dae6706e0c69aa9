"""One forward pass of a vision transformer read at its attention blocks.

The attention probabilities of every recognised block (``attention_sites``) are
recomputed from the queries and keys its hooks saw, and, when asked, the gradient of the
target score with respect to them: ``O = A V`` per head, so
``dS/dA = (dS/dO) V^T``, exact whatever kernel the model ran and without ``A`` being a
tensor of the model's graph; ``dS/dO`` comes from one ``torch.autograd.grad`` on the
captured attention outputs (no ``.backward()``, no ``param.grad``). The model is left as
it was: hooks removed, modes restored, also when an error is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_finite_input, check_input
from .._deferred import deferred_checks
from .._errors import LayerError, UnsupportedModelError, describe
from .attention_sites import Call, Site, find_sites
from .diagnosis import check_finite_scores, check_gradients, forward
from .hooks import HookSet, explaining
from .layout_detection import resolve_layout
from .layouts import TOKENS, Layout, Resolved, Tokens
from .per_class import class_scores, classes_per_sample, differentiate
from .targets import ResolvedTarget, require_resolved


@dataclass(frozen=True)
class AttentionCapture:
    """What one pass gave: per block, in the order the blocks ran."""

    classes: torch.Tensor | None
    """The class explained per sample ``(N,)``, or ``None`` for a score target."""
    names: list[str]
    """The attention modules' names."""
    attentions: list[torch.Tensor]
    """Attention probabilities ``(N, H, T, T)``, float32 or wider."""
    gradients: list[torch.Tensor] | None
    """The score's gradient with respect to each, when asked for."""
    per_class: int
    """``K`` for a target of ``K`` classes per sample (``gradients`` then hold ``N * K``
    rows, sample-major, and ``classes`` is ``(N, K)``), else 0."""
    tokens: Resolved
    """How the ``T`` tokens are laid out: ``prefix`` tokens (the class token first), then
    the patch ``grid``."""


def recognised_sites(model: nn.Module, method: str) -> list[Site]:
    """The attention blocks of ``model``; an error naming ``model`` when there are none."""
    sites = find_sites(model)
    if not sites:
        raise UnsupportedModelError(
            f"model: {method} found no attention block it recognises in "
            f"{type(model).__name__}; expected a vision transformer whose blocks use "
            "torch.nn.MultiheadAttention (torchvision's VisionTransformer), timm's "
            "Attention (timm ViT, DeiT) or Hugging Face ViT-style attention (q_proj, "
            "k_proj, v_proj, o_proj: ViT, DeiT, DINOv2). For a CNN, use NormGrad or GradCAM"
        )
    if any(getattr(m, "has_class_token", True) is False for m in model.modules()):
        raise UnsupportedModelError(
            f"model: {method} reads the class token's attention, and "
            f"{type(model).__name__} has none (timm class_token=False); use a model with "
            "a class token, or NormGrad on a block"
        )
    return sites


def _calls(model: nn.Module, sites: Sequence[Site], order: Sequence[Site]) -> list[Call]:
    """The calls in the order they ran; each block must have run once."""
    for site in sites:
        ran = len(site.calls)
        call = site.calls[0] if ran == 1 else None
        if call is None or any(t is None for t in (call.q, call.k, call.v, call.output)):
            what = "never ran" if ran == 0 else f"ran {ran} times"
            raise LayerError(
                f"model: the attention block {site.name!r} {what} in the forward pass of "
                f"{type(model).__name__}"
                + (" or was not read" if ran == 1 else "")
                + "; expected every attention block to run exactly once"
            )
    return [site.calls[0] for site in order]


def _check_reproduced(
    calls: Sequence[Call], attentions: Sequence[torch.Tensor], names: Sequence[str]
) -> None:
    """Raise, with the call's other checks, where the recomputed probabilities do not give
    a block's own output: the block computes something else (a rotation of q and k, a
    bias, a mask the hooks did not see), and its maps would be wrong."""
    mismatches = torch.stack([c.mismatch(a).float() for c, a in zip(calls, attentions)])
    tolerances = [c.tolerance() for c in calls]

    def action(values: list[float]) -> None:
        for name, value, tolerance in zip(names, values, tolerances):
            if not value <= tolerance:
                raise UnsupportedModelError(
                    f"model: the attention block {name!r} does not compute "
                    "softmax(q k^T * scale) v from the queries, keys and values its "
                    f"projections give (relative difference {value:.2g} from its output, "
                    f"above {tolerance:g}): a rotary embedding, a position bias or a mask "
                    "inside it? normgrad's attention methods cannot read it"
                )

    with deferred_checks() as checks:
        checks.add(mismatches, action)


def check_token_layout(layout: Layout) -> Layout:
    """``layout`` (checked by ``layouts_for``) if it can describe tokens."""
    if layout is not None and layout != TOKENS and not isinstance(layout, Tokens):
        raise LayerError(
            f"layout: expected None (detect) or normgrad.Tokens(prefix=..., grid=...) for "
            f"the tokens of the attention blocks, got {describe(layout)}"
        )
    return layout


def _layout(model: nn.Module, x: torch.Tensor, tokens: int, layout: Layout, name: str) -> Resolved:
    check_token_layout(layout)
    shape = torch.empty(x.shape[0], tokens, 1, device="meta")
    resolved = resolve_layout(shape, x.shape[2:], layout, model, name)
    if resolved.prefix < 1:
        raise LayerError(
            f"layout: the attention methods read the class token (token 0), and the tokens "
            f"of {name!r} were read with no prefix token ({resolved}); state "
            "layout=normgrad.Tokens(prefix=...) with the class token counted"
        )
    return resolved


def capture_attention(
    model: nn.Module,
    x: torch.Tensor,
    target: ResolvedTarget,
    *,
    method: str,
    gradients: bool,
    layout: Layout = None,
) -> AttentionCapture:
    """Run ``model`` on ``x`` once in eval mode; read every recognised attention block.

    Args:
        model: a vision transformer (see ``attention_sites``).
        x: the batch ``(N, C, H, W)``.
        target: the target, resolved where the call began.
        method: the calling method's name, for errors.
        gradients: also differentiate the target score with respect to the attentions.
        layout: the tokens' layout, ``None`` (detect) or ``Tokens(prefix=, grid=)``.
    """
    with deferred_checks():
        check_input(x, finite=False)
        check_finite_input(x)
        resolved = require_resolved(target, method)
        sites = recognised_sites(model, method)
        order: list[Site] = []
        with explaining(model), HookSet() as hooks:
            for site in sites:
                site.watch(hooks, order)
            # a copy that requires grad: a graph is recorded whatever the parameters'
            # requires_grad, and fast paths that skip the attention modules are not taken
            x_in = x.detach().clone().requires_grad_(True)
            output = forward(model, x_in)
            hooks.remove()
            calls = _calls(model, sites, order)
            scores, classes = class_scores(output, resolved, x.shape[0])
            check_finite_scores(model, x, scores)
            grads: Sequence[torch.Tensor | None] = []
            if gradients:
                outputs = [c.output for c in calls if c.output is not None]
                grads = differentiate(scores, outputs, retain=False)
        names = [site.name for site in order]
        if gradients:
            check_gradients(
                [f"the attention output of {n!r}" for n in names],
                [
                    g.transpose(0, 1) if c.token_first and g is not None else g
                    for c, g in zip(calls, grads)
                ],
                [i == len(names) - 1 for i in range(len(names))],
            )
        attentions = [c.probabilities(s.scale()) for c, s in zip(calls, order)]
        _check_reproduced(calls, attentions, names)
        return AttentionCapture(
            classes=classes,
            names=names,
            attentions=attentions,
            gradients=(
                [c.attention_gradient(g) for c, g in zip(calls, grads)] if gradients else None
            ),
            per_class=classes_per_sample(resolved),
            tokens=_layout(model, x, attentions[0].shape[-1], layout, names[0]),
        )
