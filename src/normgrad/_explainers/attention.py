r"""Attributions made for transformers: attention rollout and gradient-weighted relevance."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_number
from .._errors import InvalidArgumentError, describe
from .._model.attention import (
    AttentionCapture,
    capture_attention,
    check_token_layout,
    recognised_sites,
)
from .._model.layouts import Layout, layouts_for
from .._model.targets import ResolvedTarget
from ..functional import (
    HEAD_FUSIONS,
    attention_relevance,
    attention_rollout,
    class_token_map,
    upsample,
)
from .base import Explainer, Explanation, build_explanation, per_class


def _explanation(x: torch.Tensor, found: AttentionCapture, matrix: torch.Tensor) -> Explanation:
    """The class token's row of ``matrix`` ``(N, T, T)`` (or ``(N * K, T, T)`` for ``K``
    classes per sample) over the patch grid, upsampled to the input."""
    tokens, k = found.tokens, found.per_class
    grid = class_token_map(matrix, tokens.prefix, tokens.grid)
    explanation = build_explanation(x.shape[2:], found.classes, raw=upsample(grid, x.shape[2:]))
    return per_class(explanation, k) if k else explanation


class _AttentionExplainer(Explainer):
    """What the attention methods share: the model's attention blocks, found when built,
    and the tokens' layout."""

    _gradients = False

    def __init__(self, model: nn.Module, layout: Layout) -> None:
        super().__init__(model)
        self.blocks = [s.name for s in recognised_sites(self.model, type(self).__name__)]
        self.layout = check_token_layout(layouts_for(["attention"], layout)[0])

    def _capture(self, x: torch.Tensor, target: ResolvedTarget) -> AttentionCapture:
        return capture_attention(
            self.model,
            x,
            target,
            method=type(self).__name__,
            gradients=self._gradients,
            layout=self.layout,
        )


class AttentionRollout(_AttentionExplainer):
    r"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers",
    ACL 2020): the class token's row of $\tilde A_L \cdots \tilde A_1$ over the patches.

    Per block, $\bar A = \mathrm{fuse}_h A$ (``head_fusion``: mean, max or min over the
    heads), its lowest ``discard_ratio`` of entries set to 0 (never the class token's
    attention to itself), $\tilde A = \mathrm{rows}(0.5\,\bar A + 0.5\,I)$ (rows
    renormalised to sum to 1); see
    [`functional.attention_rollout`][normgrad.functional.attention_rollout]. The map is
    the rollout's row of the class token (token 0) over the patch tokens
    ([`functional.class_token_map`][normgrad.functional.class_token_map]), laid out on the
    patch grid, upsampled bilinearly to the input (``raw``, non-negative) and min-max
    normalised (``saliency`` ``(N, 1, H, W)`` in ``[0, 1]``); ``layer_maps``,
    ``raw_layer_maps`` and ``attribution`` are empty. It does not depend on the class:
    ``target`` only sets ``classes``.

    The attention probabilities are recomputed from the queries and keys each block's
    hooks see, $A = \mathrm{softmax}(q k^\top / \sqrt{d})$ per head in float32 (float64
    for a float64 model), so the model may run any attention kernel (fused
    ``scaled_dot_product_attention`` in timm and Hugging Face, torchvision's
    ``nn.MultiheadAttention(need_weights=False)``) and is never changed. Recognised:
    torchvision ``VisionTransformer`` (and any ``nn.MultiheadAttention`` self-attention),
    timm ``Attention`` (ViT, DeiT, register tokens), Hugging Face ViT, DeiT, DINOv2
    (transformers 5). Prefix tokens (class, distillation, register) are read from the
    model or stated with ``layout=normgrad.Tokens(prefix=...)``; the class token is token 0.

    Args:
        model: a vision transformer with a class token.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: the fraction of the lowest fused attentions discarded per block,
            in ``[0, 1)``.
        layout: ``None`` (detect) or [`Tokens`][normgrad.Tokens].

    Examples:
        >>> import torch, normgrad
        >>> from torchvision.models import VisionTransformer
        >>> vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2,
        ...                         num_heads=2, hidden_dim=16, mlp_dim=32)
        >>> normgrad.AttentionRollout(vit, head_fusion="max")(
        ...     torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
        layout: Layout = None,
    ) -> None:
        super().__init__(model, layout)
        if head_fusion not in HEAD_FUSIONS:
            raise InvalidArgumentError(
                f"head_fusion: expected one of {list(HEAD_FUSIONS)}, got {describe(head_fusion)}"
            )
        self.head_fusion = head_fusion
        self.discard_ratio = check_number(
            discard_ratio, "discard_ratio", low=0, high=1, open_high=True
        )

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        found = self._capture(x, target)
        rollout = attention_rollout(found.attentions, self.head_fusion, self.discard_ratio)
        if found.per_class:  # the same map for every class
            rollout = rollout.repeat_interleave(found.per_class, 0)
        return _explanation(x, found, rollout)

    def __repr__(self) -> str:
        return (
            f"AttentionRollout({type(self.model).__name__}, head_fusion={self.head_fusion!r}, "
            f"discard_ratio={self.discard_ratio})"
        )


class TransformerAttribution(_AttentionExplainer):
    r"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, "Generic
    Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
    Transformers", ICCV 2021): the class token's row of $R$ over the patches.

    $R = I$; for each block, first to last, $\bar A = \mathrm{mean}_h\,(\nabla A \odot
    A)^{+}$ and $R \leftarrow R + \bar A R$, with $\nabla A = \partial s / \partial A$ the
    gradient of the target's raw logit $s$ with respect to the block's attention
    probabilities ([`functional.attention_relevance`][normgrad.functional.attention_relevance]).
    This is the ICCV 2021 rule, **not** the LRP-based relevance propagation of their
    CVPR 2021 paper ("Transformer Interpretability Beyond Attention Visualization"). The
    map is read, upsampled and normalised as in
    [`AttentionRollout`][normgrad.AttentionRollout] (``raw`` non-negative).

    How the gradient is had: $A$ is recomputed from the queries and keys the hooks see
    (the model's kernel, fused or not, is left alone). Its output is $O = A V$ per head,
    so $\partial s / \partial A = (\partial s / \partial O)\, V^\top$, exact though $A$ is
    not a tensor of the model's graph; $\partial s / \partial O$ is the gradient at the
    output projection's input (timm: the input of ``norm`` before ``proj``; Hugging
    Face: ``o_proj``'s input), and for ``nn.MultiheadAttention``, which applies
    ``out_proj`` inside ``F.multi_head_attention_forward``, $\partial s / \partial O =
    (\partial s / \partial Y)\, W_\mathrm{out}$ from the gradient at its output $Y$. One
    ``torch.autograd.grad`` on those tensors: no ``.backward()``, no ``param.grad``.

    Args:
        model: a vision transformer with a class token (see
            [`AttentionRollout`][normgrad.AttentionRollout] for the ones recognised).
        layout: ``None`` (detect) or [`Tokens`][normgrad.Tokens].

    Examples:
        >>> import torch, normgrad
        >>> from torchvision.models import VisionTransformer
        >>> vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2,
        ...                         num_heads=2, hidden_dim=16, mlp_dim=32)
        >>> _ = torch.nn.init.normal_(vit.heads.head.weight, std=0.02)
        >>> normgrad.TransformerAttribution(vit)(torch.randn(2, 3, 32, 32), 0).shape
        torch.Size([2, 1, 32, 32])
    """

    _gradients = True

    def __init__(self, model: nn.Module, *, layout: Layout = None) -> None:
        super().__init__(model, layout)

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        found = self._capture(x, target)
        assert found.gradients is not None
        k = found.per_class  # gradients of N * K rows: each sample's attentions K times
        attentions = (
            [a.repeat_interleave(k, 0) for a in found.attentions] if k else found.attentions
        )
        relevance = attention_relevance(attentions, found.gradients)
        return _explanation(x, found, relevance)
