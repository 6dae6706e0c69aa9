"""The protocol every normgrad explainer follows."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._model.layers import check_model
from .._model.targets import Target
from ..functional import layer_maps_to_saliency, upsample


@dataclass(frozen=True)
class Explanation:
    """The result of explaining a batch.

    Attributes:
        saliency: float tensor ``(N, 1, *spatial)`` at the input's size, values in ``[0, 1]``.
        raw: the map before min-max normalisation, same shape, or ``None`` where the method
            has no single raw map (multi-layer NormGrad fuses normalised maps).
        classes: the class index explained for each sample ``(N,)``, or ``None`` when the
            target was a callable.
        layer_maps: per-layer maps, upsampled and normalised to ``[0, 1]`` (unfused), by
            layer name; empty for methods without layers.
        raw_layer_maps: per-layer raw maps at each layer's own resolution, by layer name
            (NormGrad's map, Grad-CAM's class activation map after its ReLU).
        attribution: the signed attribution in input space before the channel reduction,
            ``(N, C, *spatial)``, for the methods that have one (the gradient, x ⊙ the
            gradient, guided gradients, Integrated Gradients); ``None`` otherwise.
    """

    saliency: torch.Tensor
    raw: torch.Tensor | None
    classes: torch.Tensor | None
    layer_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    raw_layer_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    attribution: torch.Tensor | None = None


class Explainer(abc.ABC):
    """Base class of the saliency methods: ``explainer(x, target) -> (N, 1, *spatial)``.

    Subclasses implement [`explain`][normgrad.Explainer.explain]; calling the explainer returns
    ``explain(x, target).saliency``. Every explainer runs the model in eval mode and
    leaves it exactly as it found it (hooks removed, training flags restored, no
    ``param.grad`` written), also when it raises.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = check_model(model)

    @abc.abstractmethod
    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``x`` ``(N, C, *spatial)`` for ``target``; see
        [`Explanation`][normgrad.Explanation]."""

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Saliency maps ``(N, 1, *spatial)`` with values in ``[0, 1]``."""
        return self.explain(x, target).saliency

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


def build_explanation(
    size: Sequence[int],
    classes: torch.Tensor | None,
    *,
    layers: Mapping[str, torch.Tensor] | None = None,
    raw: torch.Tensor | None = None,
    attribution: torch.Tensor | None = None,
) -> Explanation:
    """The one way an [`Explanation`][normgrad.Explanation] is made, from raw (non-negative) maps.

    Args:
        size: the input's spatial size.
        classes: the classes explained ``(N,)``, or ``None``.
        layers: raw maps ``(N, 1, *spatial_j)`` at each layer's resolution, by name.
        raw: the method's raw map ``(N, 1, *size)`` in input space. When it is left out,
            the saliency is made from the layer maps: each upsampled and min-max normalised,
            several fused by their geometric mean; ``raw`` is then the single layer's
            upsampled map (``None`` for several layers).
        attribution: the signed attribution ``(N, C, *size)``, if any.

    A map that is constant for a sample normalises to zeros (see
    [`functional.layer_maps_to_saliency`][normgrad.functional.layer_maps_to_saliency]).
    """
    layer_raws = dict(layers or {})
    fused, normalised, _ = (
        layer_maps_to_saliency(list(layer_raws.values()), size) if layer_raws else (None, [], [])
    )
    if raw is not None:
        saliency = layer_maps_to_saliency([raw], size)[0]
    elif fused is not None:
        saliency = fused
        if len(layer_raws) == 1:
            raw = upsample(next(iter(layer_raws.values())), size)
    else:
        raise ValueError("build_explanation: expected layer maps or a raw map")
    return Explanation(
        saliency=saliency,
        raw=raw,
        classes=classes,
        layer_maps=dict(zip(layer_raws, normalised)),
        raw_layer_maps=layer_raws,
        attribution=attribution,
    )
