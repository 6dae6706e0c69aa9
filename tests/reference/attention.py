"""Literal references for the attention methods, from the papers' equations (tests only).

The attention of each block is recomputed by an eager re-implementation written here from
the module's weights, head by head, with an explicit softmax: a copy of the model has each
attention module replaced by :class:`EagerAttention`, whose per-head probabilities ``A_h``
are tensors of the graph, so ``dS/dA_h`` is autograd's own (never the ``(dS/dO) V^T``
identity the library uses). Rollout (Abnar & Zuidema, 2020) and the relevance of Chefer,
Gur & Wolf (ICCV 2021) are then written entry by entry in Python floats.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as tf
from torch import nn

Matrix = list[list[float]]


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x @ weight.T + (0 if bias is None else bias)


def _softmax_rows(scores: torch.Tensor) -> torch.Tensor:
    """exp(s_ij - max_j s_ij) / sum_j exp(...), written out."""
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


class EagerAttention(nn.Module):
    """One attention module re-implemented head by head from its weights.

    ``kind`` is ``"mha"`` (torch ``nn.MultiheadAttention``, batch first), ``"timm"`` or
    ``"hf"``. ``probabilities`` holds, per call, the list of ``A_h`` ``(N, T, T)``.
    """

    def __init__(self, original: nn.Module, kind: str) -> None:
        super().__init__()
        self.original, self.kind = original, kind
        self.probabilities: list[list[torch.Tensor]] = []

    def __getattr__(self, name: str) -> Any:
        # what a calling block reads of the module it called (batch_first, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["original"], name)

    def _projections(self, x: torch.Tensor) -> tuple[list[Any], int, Any]:
        m: Any = self.original
        if self.kind == "mha":
            d = m.head_dim
            w, b = m.in_proj_weight, m.in_proj_bias
            width = m.embed_dim
            weights = [w[i * width : (i + 1) * width] for i in range(3)]
            biases = [None if b is None else b[i * width : (i + 1) * width] for i in range(3)]
            return [_linear(x, w_, b_) for w_, b_ in zip(weights, biases)], d, m.out_proj
        if self.kind == "timm":
            d = m.head_dim
            qkv = m.qkv(x)
            width = m.num_heads * d
            return [qkv[..., i * width : (i + 1) * width] for i in range(3)], d, m
        d = m.head_dim
        return [m.q_proj(x), m.k_proj(x), m.v_proj(x)], d, m.o_proj

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        token_first = self.kind == "mha" and not self.original.batch_first
        x = x.transpose(0, 1) if token_first else x
        (q, k, v), d, out = self._projections(x)
        heads = q.shape[-1] // d
        probabilities, outputs = [], []
        for h in range(heads):
            part = slice(h * d, (h + 1) * d)
            q_h, k_h, v_h = q[..., part], k[..., part], v[..., part]
            if self.kind == "timm":
                q_h, k_h = self.original.q_norm(q_h), self.original.k_norm(k_h)
            # Hugging Face's kernels multiply by the module's ``scaling``; the others
            # divide by sqrt(d)
            scale = self.original.scaling if self.kind == "hf" else 1 / math.sqrt(d)
            a_h = _softmax_rows(q_h @ k_h.transpose(-2, -1) * scale)
            probabilities.append(a_h)
            outputs.append(a_h @ v_h)
        self.probabilities.append(probabilities)
        o = torch.cat(outputs, dim=-1)
        if self.kind == "timm":
            return out.proj(out.norm(o))
        y = out(o)
        return (y.transpose(0, 1) if token_first else y, None)


def eager_copy(model: nn.Module) -> tuple[nn.Module, list[EagerAttention]]:
    """A deep copy of ``model`` with every attention module replaced, and the
    replacements in module order."""
    twin = copy.deepcopy(model)
    replaced: list[EagerAttention] = []
    for name, module in list(twin.named_modules()):
        if isinstance(module, nn.MultiheadAttention):
            kind = "mha"
        elif hasattr(module, "qkv") and hasattr(module, "q_norm"):
            kind = "timm"
        elif hasattr(module, "q_proj") and hasattr(module, "o_proj"):
            kind = "hf"
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        eager = EagerAttention(module, kind)
        setattr(parent, child, eager)
        replaced.append(eager)
    return twin, replaced


def _logits(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


def eager_attentions(
    model: nn.Module, x: torch.Tensor, classes: list[int]
) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Per block, per head: ``A_h`` ``(N, T, T)`` and ``dS/dA_h`` of the sum over samples
    of the logit of ``classes[n]``, by autograd through the eager copy (eval mode)."""
    twin, blocks = eager_copy(model)
    twin.eval()
    logits = _logits(twin(x))
    score = sum(logits[n, c] for n, c in enumerate(classes))
    flat = [a for block in blocks for a in block.probabilities[0]]
    grads = torch.autograd.grad(score, flat, allow_unused=True)
    heads = len(blocks[0].probabilities[0])
    attentions = [[a.detach() for a in block.probabilities[0]] for block in blocks]
    gradients = [
        [torch.zeros_like(flat[0]) if g is None else g for g in grads[i * heads : (i + 1) * heads]]
        for i in range(len(blocks))
    ]
    return attentions, gradients


def _identity(t: int) -> Matrix:
    return [[1.0 if i == j else 0.0 for j in range(t)] for i in range(t)]


def _product(a: Matrix, b: Matrix) -> Matrix:
    t = len(a)
    return [[sum(a[i][m] * b[m][j] for m in range(t)) for j in range(t)] for i in range(t)]


def reference_rollout(
    attentions: list[list[torch.Tensor]], sample: int, head_fusion: str, discard_ratio: float
) -> Matrix:
    """Abnar & Zuidema's rollout of one sample: per block, the heads fused entry by entry,
    the ``int(ratio * T * T)`` lowest entries other than (0, 0) set to 0 (ties: the
    earlier entry in row-major order first), ``0.5 A + 0.5 I`` with each row divided by
    its sum, and the product from the last block to the first."""
    fuse = {"mean": lambda v: sum(v) / len(v), "max": max, "min": min}[head_fusion]
    t = attentions[0][0].shape[-1]
    rollout = _identity(t)
    for block in attentions:
        heads = [a[sample].tolist() for a in block]
        fused = [[fuse([h[i][j] for h in heads]) for j in range(t)] for i in range(t)]
        entries = sorted((fused[i][j], i * t + j) for i in range(t) for j in range(t) if i or j)
        for _, index in entries[: int(discard_ratio * t * t)]:
            fused[index // t][index % t] = 0.0
        mixed = [[0.5 * fused[i][j] + (0.5 if i == j else 0.0) for j in range(t)] for i in range(t)]
        mixed = [[value / sum(row) for value in row] for row in mixed]
        rollout = _product(mixed, rollout)
    return rollout


def reference_relevance(
    attentions: list[list[torch.Tensor]], gradients: list[list[torch.Tensor]], sample: int
) -> Matrix:
    """Chefer, Gur & Wolf (ICCV 2021), self-attention rule: R = I; per block
    Abar_ij = mean_h max(dS/dA_hij * A_hij, 0); R = R + Abar R."""
    t = attentions[0][0].shape[-1]
    relevance = _identity(t)
    for block, block_grads in zip(attentions, gradients):
        heads = [a[sample].tolist() for a in block]
        grads = [g[sample].tolist() for g in block_grads]
        count = len(heads)
        weighted = [
            [
                sum(max(g[i][j] * a[i][j], 0.0) for a, g in zip(heads, grads)) / count
                for j in range(t)
            ]
            for i in range(t)
        ]
        step = _product(weighted, relevance)
        relevance = [[relevance[i][j] + step[i][j] for j in range(t)] for i in range(t)]
    return relevance


def class_row_map(matrix: Matrix, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Row 0 of ``matrix`` over tokens ``prefix ..``, cell (r, c) from token
    ``prefix + r * columns + c``: ``(1, 1, rows, columns)`` float64."""
    rows, columns = grid
    out = torch.zeros(1, 1, rows, columns, dtype=torch.float64)
    for r in range(rows):
        for c in range(columns):
            out[0, 0, r, c] = matrix[0][prefix + r * columns + c]
    return out


def upsampled(grid_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The grid map at the input's size, bilinear, ``align_corners=False`` (torch's)."""
    return tf.interpolate(grid_map, size=size, mode="bilinear", align_corners=False)
