"""Randomisation sanity checks (Adebayo et al., 2018): does a map depend on the weights?

A saliency method whose maps barely change when the model's weights are replaced by random
ones explains the input (edges, intensity), not the model. ``randomize`` makes the paper's
semi- and fully-randomised copies; ``cascading_randomization`` randomises from the top layer
down, one block more at a time, and measures how similar the maps stay.

Examples:
    >>> import torch, torchvision
    >>> from normgrad import sanity
    >>> model = torchvision.models.resnet18(num_classes=2)
    >>> semi = sanity.randomize(model, "semi", seed=0)
    >>> torch.equal(semi.conv1.weight, model.conv1.weight)
    True
    >>> torch.equal(semi.fc.weight, model.fc.weight)
    False
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._errors import InvalidArgumentError, LayerError
from ._explainers.base import Explainer
from ._model.layers import LayerSpec, check_model, resolve_layers
from ._model.targets import Target
from .metrics import rank_correlation

__all__ = [
    "CascadeResult",
    "cascade_blocks",
    "cascading_randomization",
    "randomize",
    "reinitialize",
]

_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm, InstanceNorm
    nn.GroupNorm,
    nn.LayerNorm,  # and its subclasses (torchvision's and timm's LayerNorm2d)
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

#: Standard deviation of the parameters that are neither weights, biases nor norms.
TOKEN_STD = 0.02


def _draw(param: torch.Tensor, std: float, generator: torch.Generator) -> None:
    values = torch.randn(param.shape, generator=generator, dtype=torch.float64) * std
    param.copy_(values.to(param.dtype))


def reinitialize(module: nn.Module, generator: torch.Generator) -> None:
    r"""Re-initialise every parameter of ``module`` and its children, in place.

    What re-initialising means depends on a parameter's role:

    - **Normalisation layers** (BatchNorm, InstanceNorm, GroupNorm, LayerNorm and its
      subclasses, RMSNorm): weight 1, bias 0, running statistics reset: the identity they
      start as.
    - **Position embeddings, tokens and tables** (a name holding ``pos``, ``token`` or
      ``table``: class, distillation and register tokens, position embeddings, relative
      position bias tables): $\mathcal{N}(0, 0.02^2)$, the scale torchvision and timm
      draw them from.
    - **Biases** (any other name holding ``bias``: ``bias``, ``in_proj_bias``,
      ``bias_ih_l0``): zero.
    - **Gains** (at most one dimension larger than 1: layer scales such as ConvNeXt's
      ``layer_scale`` and timm's ``LayerScale.gamma``, weight-norm magnitudes):
      $\mathcal{N}(0, 0.02^2)$. A layer scale starts small in those models (``1e-6``
      to ``1e-5``), so a small random gain keeps each residual branch small, as in a fresh
      model, while it keeps nothing of the trained value; zeroing it would delete the
      branch instead of randomising it.
    - **Weights** (everything else: convolutions, linear layers, attention projections,
      recurrent weights, parametrised weights): Kaiming normal, fan in, ReLU gain,
      $\mathcal{N}(0, 2 / \mathrm{fan_{in}})$ with ``fan_in = numel / shape[0]``.

    Values are drawn on the CPU in float64 from ``generator`` and copied, so a seed gives
    the same weights on every device and dtype.
    """
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, _NORMS):
                weight, bias = getattr(sub, "weight", None), getattr(sub, "bias", None)
                if isinstance(weight, torch.Tensor):
                    weight.fill_(1)
                if isinstance(bias, torch.Tensor):
                    bias.zero_()
                if isinstance(sub, nn.modules.batchnorm._NormBase):
                    sub.reset_running_stats()
                continue
            for name, param in sub.named_parameters(recurse=False):
                lowered = name.lower()
                if any(word in lowered for word in ("pos", "token", "table")):
                    _draw(param, TOKEN_STD, generator)
                elif "bias" in lowered:
                    param.zero_()
                elif sum(size > 1 for size in param.shape) <= 1:
                    _draw(param, TOKEN_STD, generator)
                else:
                    _draw(param, math.sqrt(param.shape[0] / param.numel() * 2.0), generator)


def _last_linear(model: nn.Module) -> str:
    name: str | None = None
    for child_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            name = child_name
    if name is None:
        raise LayerError(
            f"layer: {type(model).__name__} has no nn.Linear to re-initialise; pass layer= "
            "the classifier's name"
        )
    return name


def randomize(
    model: nn.Module, mode: str = "semi", seed: int = 0, layer: LayerSpec | None = None
) -> nn.Module:
    """A randomised copy of ``model``; the original is left untouched.

    Args:
        model: the trained model.
        mode: ``"semi"``: re-initialise the final classifier layer only (the paper's SR);
            ``"full"``: re-initialise every weight (FR). See
            [`reinitialize`][normgrad.sanity.reinitialize].
        seed: seed of the new weights.
        layer: for ``"semi"``, the classifier layer (default: the last ``nn.Linear``).

    Returns:
        A deep copy with new weights, in the original's training mode.
    """
    check_model(model)
    if mode not in ("semi", "full"):
        raise InvalidArgumentError(f"mode: expected 'semi' or 'full', got {mode!r}")
    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    if mode == "full":
        reinitialize(clone, generator)
        return clone
    name = layer if isinstance(layer, str) else None
    if layer is None:
        name = _last_linear(clone)
    elif isinstance(layer, nn.Module):
        name = resolve_layers(model, layer, argument="layer")[0][0]
    assert name is not None
    ((_, target_module),) = resolve_layers(clone, name, argument="layer")
    reinitialize(target_module, generator)
    return clone


def cascade_blocks(model: nn.Module) -> list[str]:
    """Default cascade, top first: the model's children with weights, containers opened.

    Plain ``nn.Sequential`` / ``nn.ModuleList`` children are opened one level, so a
    torchvision ResNet gives ``fc, layer4.1, layer4.0, layer3.1, ..., bn1, conv1`` and an
    EfficientNet ``classifier.1, features.8, features.7, ..., features.0``.
    """
    names: list[str] = []
    for name, child in model.named_children():
        if type(child) in (nn.Sequential, nn.ModuleList):
            names.extend(
                f"{name}.{sub}"
                for sub, grand in child.named_children()
                if any(True for _ in grand.parameters())
            )
        elif any(True for _ in child.parameters()):
            names.append(name)
    return names[::-1]


@dataclass(frozen=True)
class CascadeResult:
    """Similarity of maps to the trained model's as blocks are randomised, top first.

    Attributes:
        blocks: the blocks randomised, in order: step ``i`` has randomised
            ``blocks[: i + 1]``.
        spearman: Spearman rank correlation with the trained model's maps,
            ``(steps, N)``.
        saliency: the maps, ``(steps + 1, N, 1, *spatial)`` (trained first), when kept;
            else ``None``.
    """

    blocks: list[str]
    spearman: torch.Tensor
    saliency: torch.Tensor | None

    def mean(self) -> list[float]:
        """Mean similarity over samples at each step (NaN for constant maps ignored)."""
        return [float(torch.nanmean(row)) for row in self.spearman]


def cascading_randomization(
    explainer: Callable[[nn.Module], Explainer],
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    blocks: Sequence[str] | None = None,
    seed: int = 0,
    keep_maps: bool = False,
) -> CascadeResult:
    """Cascading randomisation: re-initialise blocks from the top down, comparing maps.

    Args:
        explainer: builds an explainer for a model, e.g.
            ``lambda m: normgrad.NormGrad(m, "layer4.2", "conv3x3")``.
        model: the trained model (left untouched: a copy is randomised).
        x: the batch to explain.
        target: what to explain; ``None`` means the class the *trained* model predicts, kept
            fixed while the weights change (so the maps compare the same question).
        blocks: names to randomise, top first (default
            [`cascade_blocks`][normgrad.sanity.cascade_blocks]).
        seed: seed of the new weights.
        keep_maps: keep every step's maps in the result.

    Returns:
        [`CascadeResult`][normgrad.sanity.CascadeResult] with the Spearman correlation of every
        step's maps with the trained model's (high = the method ignores the weights).
    """
    check_model(model)
    names = list(blocks) if blocks is not None else cascade_blocks(model)
    if not names:
        raise InvalidArgumentError("blocks: expected at least one block to randomise, got none")
    clone = copy.deepcopy(model)
    resolved = resolve_layers(clone, names, argument="blocks")
    reference = explainer(model).explain(x, target)
    fixed_target = reference.classes if reference.classes is not None else target
    maps = [reference.saliency]
    rows = []
    generator = torch.Generator().manual_seed(seed)
    for _, module in resolved:
        reinitialize(module, generator)
        current = explainer(clone)(x, fixed_target)
        rows.append(rank_correlation(reference.saliency, current))
        if keep_maps:
            maps.append(current)
    return CascadeResult(names, torch.stack(rows), torch.stack(maps) if keep_maps else None)
