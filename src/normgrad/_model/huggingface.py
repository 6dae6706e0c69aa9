"""Token layouts of Hugging Face ``transformers`` vision models, as the model states them.

A Hugging Face vision model keeps its configuration (``config``, with ``patch_size`` and,
for hierarchical models such as Swin, ``depths``) and an embeddings module holding the
patch embedding (``patch_embeddings``) and the prefix tokens it puts before the patches:
``cls_token`` (ViT, BEiT, DINOv2), ``distillation_token`` (DeiT) and ``register_tokens``
(DINOv2 with registers: ``config.num_register_tokens``). From these the token layout of a
layer's output ``(N, T, C)`` follows: ``P`` prefix tokens, then the patch grid in row-major
order, ``size // patch_size`` per side (ViT, DINOv2) or ``ceil(size / patch_size)`` (Swin
pads the input to the patch), halved (rounded up) after each of a Swin's patch mergings.
``transformers`` is never imported: the model is read by its attributes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

# the learned tokens an embeddings module puts before the patch tokens, in any order
_PREFIX_TOKENS = ("cls_token", "distillation_token", "register_tokens")


def _configured(model: nn.Module) -> tuple[object, nn.Module] | None:
    """The configuration of the first Hugging Face model inside ``model`` (the model
    itself or a module the user wrapped it in) that has a patch size, and its embeddings
    module."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "patch_size", None) is None or not hasattr(config, "model_type"):
            continue
        for inner in module.modules():
            if isinstance(getattr(inner, "patch_embeddings", None), nn.Module):
                return config, inner
    return None


def _prefix(embeddings: nn.Module) -> int:
    """How many tokens ``embeddings`` puts before the patches (its prefix parameters)."""
    count = 0
    for name in _PREFIX_TOKENS:
        token = getattr(embeddings, name, None)
        if isinstance(token, nn.Parameter) and token.ndim == 3:
            count += token.shape[1]
    return count


def _grids(config: object, image: Sequence[int]) -> list[tuple[int, ...]]:
    """The patch grid of each stage. A plain ViT's patch embedding drops the remainder
    (``size // patch_size``); a hierarchical model's (``config.depths``: Swin) pads the
    input to the patch (``ceil(size / patch_size)``), and each later stage halves the
    grid, rounding up."""
    patch = getattr(config, "patch_size", 1)
    sizes = tuple(patch) if isinstance(patch, (tuple, list)) else (patch,) * len(image)
    depths = getattr(config, "depths", None) or ()
    if not depths:
        return [tuple(int(i) // int(p) for i, p in zip(image, sizes))]
    grid = tuple(-(-int(i) // int(p)) for i, p in zip(image, sizes))
    grids = [grid]
    for _ in range(len(depths) - 1):
        grid = tuple(-(-g // 2) for g in grid)
        grids.append(grid)
    return grids


def huggingface_tokens(
    model: nn.Module, image: Sequence[int], tokens: int
) -> tuple[int, tuple[int, ...]] | None:
    """The prefix count and the patch grid of ``tokens`` tokens of a Hugging Face model
    for an input of spatial size ``image``, as the model states them; ``None`` when
    ``model`` holds no Hugging Face vision model.

    The grid is the stage's whose patches are ``tokens - prefix`` (the blocks), else the
    stage's whose patches are all ``tokens`` (the patch embedding, before the prefix is
    added: the caller then finds no prefix), else the first stage's."""
    found = _configured(model)
    if found is None:
        return None
    config, embeddings = found
    prefix = _prefix(embeddings)
    grids = _grids(config, image)
    for count in (tokens - prefix, tokens):
        matching = [g for g in grids if math.prod(g) == count]
        if len(matching) == 1:
            return prefix, matching[0]
    return prefix, grids[0]
