"""The protocol every normgrad explainer follows."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from . import functional as F
from ._model import check_model
from ._target import Target


@dataclass(frozen=True)
class Explanation:
    """The result of explaining a batch.

    Attributes:
        saliency: float tensor ``(N, 1, *spatial)`` at the input's size, values in ``[0, 1]``.
        raw: the map before min-max normalisation, same shape, or ``None`` where the method
            has no single raw map (multi-layer NormGrad fuses normalised maps).
        target: the class index explained for each sample ``(N,)``, or ``None`` when the
            target was a callable.
        layer_maps: per-layer maps, upsampled and normalised to ``[0, 1]`` (unfused), by
            layer name; empty for methods without layers.
        raw_layer_maps: per-layer raw maps at each layer's own resolution, by layer name.
        attribution: the signed attribution before the channel reduction, where the method
            has one: ``(N, C, *spatial)`` for input-gradient methods (the gradient, x ⊙ the
            gradient, ...), the signed class activation map at the layer's resolution for
            Grad-CAM; ``None`` otherwise.
    """

    saliency: torch.Tensor
    raw: torch.Tensor | None
    target: torch.Tensor | None
    layer_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    raw_layer_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    attribution: torch.Tensor | None = None


class Explainer(abc.ABC):
    """Base class of the saliency methods: ``explainer(x, target) -> (N, 1, *spatial)``.

    Subclasses implement :meth:`explain`; calling the explainer returns
    ``explain(x, target).saliency``. Every explainer runs the model in eval mode and
    leaves it exactly as it found it (hooks removed, training flags restored, no
    ``param.grad`` written), also when it raises.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = check_model(model)

    @abc.abstractmethod
    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``x`` ``(N, C, *spatial)`` for ``target``; see :class:`Explanation`."""

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Saliency maps ``(N, 1, *spatial)`` with values in ``[0, 1]``."""
        return self.explain(x, target).saliency

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


def explanation_from_raw(
    raw: torch.Tensor,
    target: torch.Tensor | None,
    attribution: torch.Tensor | None = None,
) -> Explanation:
    """Normalise one raw map ``(N, 1, *spatial)`` into an :class:`Explanation`.

    A map that is constant for a sample normalises to zeros, as for NormGrad.
    """
    saliency, _, _ = F.layer_maps_to_saliency([raw], raw.shape[2:])
    return Explanation(saliency=saliency, raw=raw, target=target, attribution=attribution)
