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

import torch
from torch import nn

from ._agreement import agreement
from ._checks import check_known
from ._errors import InvalidArgumentError, LayerError
from ._explainers.base import Explainer
from ._model.layers import LayerSpec, check_model, resolve_layers
from ._model.targets import Target
from ._mprt import CascadeResult, ComplexityResult, check_bins, discrete_entropy, noise_averaged
from ._transfer import to_device
from .metrics import SIMILARITY_MEASURES, map_similarity

__all__ = [
    "CascadeResult",
    "ComplexityResult",
    "agreement",
    "cascade_blocks",
    "cascading_randomization",
    "efficient_mprt",
    "randomize",
    "reinitialize",
    "smooth_mprt",
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
    param.copy_(to_device(values, param.device, param.dtype))


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
        A deep copy with new weights, in the original's training mode; compare its maps
        with the original's by any measure with [`agreement`][normgrad.sanity.agreement]
        (``agreement(explainer, model, randomize(model, "full"), x, measure="ssim")``).
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


Of = Callable[[nn.Module], torch.Tensor]


def _states(
    model: nn.Module, blocks: Sequence[str] | None, seed: int
) -> tuple[list[str], Callable[[Of, torch.Tensor | None], list[torch.Tensor]]]:
    """The blocks of a cascade and a function that gives a model function's value for the
    trained model (``first``, when known), then after each block is randomised (top
    first) in a copy."""
    check_model(model)
    names = list(blocks) if blocks is not None else cascade_blocks(model)
    if not names:
        raise InvalidArgumentError("blocks: expected at least one block to randomise, got none")
    resolve_layers(model, names, argument="blocks")

    def run(of: Of, first: torch.Tensor | None = None) -> list[torch.Tensor]:
        clone = copy.deepcopy(model)
        resolved = resolve_layers(clone, names, argument="blocks")
        values = [of(model) if first is None else first]
        generator = torch.Generator().manual_seed(seed)
        for _, module in resolved:
            reinitialize(module, generator)
            values.append(of(clone))
        return values

    return names, run


def _reference(
    explainer: Callable[[nn.Module], Explainer], model: nn.Module, x: torch.Tensor, target: Target
) -> tuple[Target, torch.Tensor]:
    """The classes the trained model's maps explain (``target=None``: its predictions),
    kept for every randomised copy, and those maps."""
    reference = explainer(model).explain(x, target)
    kept = reference.classes if reference.classes is not None else target
    return kept, reference.saliency


def cascading_randomization(
    explainer: Callable[[nn.Module], Explainer],
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    blocks: Sequence[str] | None = None,
    seed: int = 0,
    keep_maps: bool = False,
    measure: str = "spearman",
) -> CascadeResult:
    """Cascading randomisation (MPRT): re-initialise blocks from the top down, comparing maps.

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
        measure: ``"spearman"``, ``"spearman_abs"`` or ``"ssim"``
            ([`map_similarity`][normgrad.metrics.map_similarity]).

    Returns:
        [`CascadeResult`][normgrad.sanity.CascadeResult] with the similarity of every
        step's maps with the trained model's (high = the method ignores the weights).
    """
    check_known([measure], SIMILARITY_MEASURES, "measure", "measure")
    names, run = _states(model, blocks, seed)
    fixed, trained = _reference(explainer, model, x, target)
    maps = run(lambda m: explainer(m)(x, fixed), trained)
    return _compared(names, maps, measure, keep_maps)


def _compared(
    names: list[str], maps: list[torch.Tensor], measure: str, keep_maps: bool
) -> CascadeResult:
    rows = [map_similarity(maps[0], current, measure) for current in maps[1:]]
    return CascadeResult(
        names, torch.stack(rows), torch.stack(maps) if keep_maps else None, measure
    )


def smooth_mprt(
    explainer: Callable[[nn.Module], Explainer],
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    blocks: Sequence[str] | None = None,
    seed: int = 0,
    *,
    samples: int = 50,
    noise: float = 0.1,
    measure: str = "spearman",
    keep_maps: bool = False,
) -> CascadeResult:
    r"""Smooth MPRT (sMPRT, Hedström et al., 2023): cascading randomisation of maps
    averaged over noisy copies of the input.

    Each model's map (trained, then after each block) is the mean of ``samples`` maps of
    $x + \varepsilon_s$, $\varepsilon_s \sim \mathcal{N}(0, \sigma^2)$, the last one
    of $x$ itself (Quantus' rule), with the same noise for every model, so the noise of a
    gradient map does not pass for a change in the weights (an image's noise depends on
    that image alone, as SmoothGrad's, so its score does not depend on its batch); then
    compared with the trained model's averaged map as in
    [`cascading_randomization`][normgrad.sanity.cascading_randomization].

    Args:
        explainer: builds an explainer for a model.
        model: the trained model (left untouched).
        x: the batch to explain.
        target: what to explain; ``None``: the trained model's predictions on ``x``,
            fixed for every noisy copy and every model.
        blocks: names to randomise, top first.
        seed: seed of the new weights and of the noise.
        samples: maps averaged per model (a positive int).
        noise: the noise's standard deviation $\sigma$, in the input's units.
        measure: as for [`map_similarity`][normgrad.metrics.map_similarity].
        keep_maps: keep every step's averaged maps.

    Returns:
        [`CascadeResult`][normgrad.sanity.CascadeResult] of the averaged maps.

    Examples:
        >>> import torch, normgrad
        >>> from torch import nn
        >>> from normgrad import sanity
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
        ...                       nn.Linear(4 * 14 * 14, 2))
        >>> x = torch.randn(2, 3, 16, 16)
        >>> r = sanity.smooth_mprt(normgrad.Gradient, model, x, samples=4)
        >>> r.blocks, tuple(r.similarity.shape)
        (['3', '0'], (2, 2))
    """
    check_known([measure], SIMILARITY_MEASURES, "measure", "measure")
    names, run = _states(model, blocks, seed)
    fixed, _ = _reference(explainer, model, x, target)

    def averaged(m: nn.Module) -> torch.Tensor:
        built = explainer(m)
        return noise_averaged(lambda inputs: built(inputs, fixed), x, samples, noise, seed)

    return _compared(names, run(averaged, None), measure, keep_maps)


def efficient_mprt(
    explainer: Callable[[nn.Module], Explainer],
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    blocks: Sequence[str] | None = None,
    seed: int = 0,
    *,
    bins: int = 100,
) -> ComplexityResult:
    r"""Efficient MPRT (eMPRT, Hedström et al., 2023): how much more complex the maps
    become when the weights are randomised.

    The complexity of a map is the entropy of the histogram of its absolute values
    (``bins`` equal bins between its minimum and maximum, Quantus' ``discrete_entropy``);
    the score of a sample is the complexity of the fully randomised model's map (every
    block of the cascade re-initialised, top first) over the trained model's,
    $\Gamma(e_{\hat f}) / \Gamma(e_f)$: a method that depends on the weights turns a
    structured map into noise and scores above 1.

    Args:
        explainer: builds an explainer for a model.
        model: the trained model (left untouched).
        x: the batch to explain.
        target: what to explain; ``None``: the trained model's predictions, fixed.
        blocks: names to randomise, top first.
        seed: seed of the new weights.
        bins: bins of the histogram (an int >= 2).

    Returns:
        [`ComplexityResult`][normgrad.sanity.ComplexityResult].

    Examples:
        >>> import torch, normgrad
        >>> from torch import nn
        >>> from normgrad import sanity
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
        ...                       nn.Linear(4 * 14 * 14, 2))
        >>> x = torch.randn(2, 3, 16, 16)
        >>> r = sanity.efficient_mprt(normgrad.Gradient, model, x)
        >>> tuple(r.complexity.shape), tuple(r.ratio.shape)
        ((3, 2), (2,))
    """
    bins = check_bins(bins)  # before any model is run
    names, run = _states(model, blocks, seed)
    fixed, trained = _reference(explainer, model, x, target)
    of: Of = lambda m: explainer(m)(x, fixed)  # noqa: E731
    complexity = discrete_entropy(torch.stack(run(of, trained)).flatten(0, 1), bins)
    complexity = complexity.view(len(names) + 1, -1)
    return ComplexityResult(names, complexity, complexity[-1] / complexity[0])
