r"""Attention maps of vision transformers: rollout and gradient-weighted relevance.

Tensors in, tensors out: attention probabilities ``(N, H, T, T)`` per block (``H`` heads,
``T`` tokens, rows summing to 1) and, for the relevance, the gradient of a score with
respect to them, in the order the blocks run. The class token is token 0; the map of a
method is the class token's row over the patch tokens
([`class_token_map`][normgrad.functional.class_token_map]).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_number
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe

HEAD_FUSIONS = ("max", "mean", "min")
"""How the heads of a block are fused in attention rollout."""


def _check_attentions(attentions: Sequence[torch.Tensor], argument: str) -> None:
    if isinstance(attentions, torch.Tensor) or not attentions:
        raise ArgumentTypeError(
            f"{argument}: expected a non-empty sequence of tensors (N, H, T, T), one per "
            f"block, got {describe(attentions)}"
        )
    first = attentions[0].shape
    for a in attentions:
        if a.ndim != 4 or a.shape[-1] != a.shape[-2] or a.shape[::2] != first[::2]:
            raise ShapeError(
                f"{argument}: expected tensors (N, H, T, T) of one batch and one token "
                f"count, got shapes {[tuple(t.shape) for t in attentions]}",
                a.shape,
            )


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    r"""One block's heads fused: $\bar A_{ij} = \mathrm{fuse}_h A_{hij}$.

    Args:
        attention: attention probabilities ``(N, H, T, T)``.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over the heads.

    Returns:
        ``(N, T, T)``.

    Examples:
        >>> import torch
        >>> from normgrad import functional as nf
        >>> a = torch.rand(2, 3, 5, 5).softmax(-1)
        >>> torch.equal(nf.fuse_heads(a, "max"), a.amax(1))
        True
    """
    if head_fusion not in HEAD_FUSIONS:
        raise InvalidArgumentError(
            f"head_fusion: expected one of {list(HEAD_FUSIONS)}, got {describe(head_fusion)}"
        )
    if head_fusion == "mean":
        return attention.mean(1)
    return attention.amax(1) if head_fusion == "max" else attention.amin(1)


def discard_lowest(fused: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    r"""``fused`` ``(N, T, T)`` with its ``floor(discard_ratio * T^2)`` lowest entries
    set to 0 in each sample, never the class token's own attention (entry ``(0, 0)``).

    Ties are broken by position (row-major: the earlier entry is discarded first), so the
    result does not depend on the device's sort. ``discard_ratio`` is in ``[0, 1)``.

    Examples:
        >>> import torch
        >>> from normgrad import functional as nf
        >>> a = torch.tensor([[[0.1, 0.9], [0.6, 0.4]]])
        >>> nf.discard_lowest(a, 0.25)  # 1 of the 4 entries
        tensor([[[0.1000, 0.9000],
                 [0.6000, 0.0000]]])
    """
    ratio = check_number(discard_ratio, "discard_ratio", low=0, high=1, open_high=True)
    n, t = fused.shape[0], fused.shape[-1]
    count = int(ratio * t * t)
    if count == 0:
        return fused
    flat = fused.reshape(n, t * t)
    keyed = flat.clone()
    keyed[:, 0] = torch.inf  # the class token's own attention is ranked last, never dropped
    lowest = torch.sort(keyed, dim=1, stable=True).indices[:, :count]
    return flat.scatter(1, lowest, 0).reshape(fused.shape)


def attention_rollout(
    attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> torch.Tensor:
    r"""Attention rollout (Abnar & Zuidema, ACL 2020): $\tilde A_L \cdots \tilde A_1$.

    Per block $b$: $\bar A_b = \mathrm{fuse}_h A_b$
    ([`fuse_heads`][normgrad.functional.fuse_heads]), its lowest entries discarded
    ([`discard_lowest`][normgrad.functional.discard_lowest]), then
    $\tilde A_b = \mathrm{rows}(0.5\,\bar A_b + 0.5\,I)$, each row divided by its sum
    (the residual connection). The rollout is the product from the last block to the first.

    Args:
        attentions: attention probabilities ``(N, H, T, T)`` of each block, first block
            first.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: the fraction of the lowest fused attentions set to 0, in ``[0, 1)``.

    Returns:
        ``(N, T, T)``, rows summing to 1, in the attentions' dtype.

    Examples:
        >>> import torch
        >>> from normgrad import functional as nf
        >>> a = [torch.rand(2, 3, 5, 5).softmax(-1) for _ in range(4)]
        >>> rollout = nf.attention_rollout(a)
        >>> rollout.shape, torch.allclose(rollout.sum(-1), torch.ones(2, 5))
        (torch.Size([2, 5, 5]), True)
    """
    _check_attentions(attentions, "attentions")
    eye = torch.eye(attentions[0].shape[-1], dtype=attentions[0].dtype, device=attentions[0].device)
    rollout: torch.Tensor | None = None
    for attention in attentions:
        fused = discard_lowest(fuse_heads(attention, head_fusion), discard_ratio)
        mixed = 0.5 * fused + 0.5 * eye
        mixed = mixed / mixed.sum(-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    assert rollout is not None
    return rollout


def attention_relevance(
    attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]
) -> torch.Tensor:
    r"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021).

    The rule of "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers" for self-attention: $R = I$, then for each block, first
    to last, $\bar A = \mathrm{mean}_h\,(\nabla A \odot A)^{+}$ and $R \leftarrow R + \bar A R$.
    Not the LRP-based rule of their CVPR 2021 paper.

    Args:
        attentions: attention probabilities ``(N, H, T, T)`` of each block, first first.
        gradients: the score's gradient with respect to each, same shapes.

    Returns:
        ``R`` ``(N, T, T)``, non-negative, in the attentions' dtype.

    Examples:
        >>> import torch
        >>> from normgrad import functional as nf
        >>> a = [torch.rand(1, 2, 4, 4).softmax(-1) for _ in range(3)]
        >>> zero = [torch.zeros_like(t) for t in a]
        >>> torch.equal(nf.attention_relevance(a, zero), torch.eye(4)[None])
        True
    """
    _check_attentions(attentions, "attentions")
    _check_attentions(gradients, "gradients")
    shapes = [tuple(t.shape) for t in attentions]
    if [tuple(g.shape) for g in gradients] != shapes:
        raise ShapeError(
            f"gradients: expected one gradient per attention, of shapes {shapes}, got "
            f"{[tuple(g.shape) for g in gradients]}",
            gradients[0].shape,
        )
    n, t = shapes[0][0], shapes[0][-1]
    eye = torch.eye(t, dtype=attentions[0].dtype, device=attentions[0].device)
    relevance = eye.expand(n, t, t)
    for attention, gradient in zip(attentions, gradients):
        weighted = (gradient * attention).clamp_min(0).mean(1)
        relevance = relevance + weighted @ relevance
    return relevance


def class_token_map(matrix: torch.Tensor, prefix: int, grid: Sequence[int]) -> torch.Tensor:
    r"""The class token's row (token 0) over the patch tokens, on the patch grid.

    Args:
        matrix: ``(N, T, T)``, e.g. a rollout or a relevance.
        prefix: the tokens before the patch grid (class, distillation, register tokens),
            at least 1 (the class token).
        grid: the patch grid ``(rows, columns)``, row-major; ``T = prefix + rows * columns``.

    Returns:
        ``(N, 1, *grid)``: ``matrix[:, 0, prefix:]`` laid out on the grid.

    Examples:
        >>> import torch
        >>> from normgrad import functional as nf
        >>> nf.class_token_map(torch.rand(2, 5, 5), 1, (2, 2)).shape
        torch.Size([2, 1, 2, 2])
    """
    cells = 1
    for g in grid:
        cells *= int(g)
    if matrix.ndim != 3 or prefix < 1 or matrix.shape[-1] != prefix + cells:
        raise ShapeError(
            f"matrix: expected (N, T, T) with T = prefix + grid cells = {prefix} + {cells} "
            f"and a class token (prefix >= 1), got shape {tuple(matrix.shape)}",
            matrix.shape,
        )
    return matrix[:, 0, prefix:].reshape(matrix.shape[0], 1, *grid)
