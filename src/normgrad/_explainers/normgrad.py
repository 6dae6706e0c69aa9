r"""NormGrad (Rebuffi et al., CVPR 2020) on one layer or several fused by geometric mean."""

from __future__ import annotations

import functools

import torch
from torch import nn

from .._model.layers import Layers, resolve_layers
from .._model.layouts import Layouts, layouts_for
from .._model.targets import Target
from ..functional import normgrad_map, parse_vil
from .base import Explainer, Explanation, Passes, PassNeeds, build_explanation


class NormGrad(Explainer):
    r"""NormGrad saliency from one or several layers.

    For each hooked layer with output $x$ and gradient $g$ of the target's raw
    logit, a virtual identity layer (VIL) gives a map at the layer's resolution:

    - ``"scaling"``: $\lVert g_u \odot x_u \rVert_2$
    - ``"conv1x1"``: $\lVert g_u \rVert_2 \lVert x_u \rVert_2$
    - ``"convKxK"`` (``K`` odd): $\lVert g_u \rVert_2 \lVert \mathrm{unfold}_K(x)_u \rVert_2$

    Each map is upsampled to the input size (bilinear, ``align_corners=False``) and min-max
    normalised per sample; several layers are fused by their geometric mean
    $\prod_j m_j^{1/J}$. A layer whose map is constant over the image for a sample
    carries no spatial information: it is left out of that sample's geometric mean. A
    single-layer (or all-layers) constant map gives an all-zero saliency map.

    One forward and one backward pass serve all layers; no weight gradient is computed.

    Args:
        model: the classifier (any ``nn.Module``).
        layers: a dotted module name (``"layer4.2"``), an ``nn.Module`` of ``model``, or a
            sequence of them. Each must output a feature map ``(N, C, *spatial)`` or
            ``(N, *spatial, C)``, or tokens ``(N, T, C)``, and run once.
        vil: ``"scaling"``, ``"conv1x1"``, ``"conv3x3"`` or any odd ``"convKxK"``. On
            volumes ``"convKxK"`` means a ``K x K x K`` patch (``"convKxKxK"`` also works).
        layout: how the layers' outputs are laid out: ``None`` (detect: see
            [`Tokens`][normgrad.Tokens]), ``"channels_first"``, ``"channels_last"``, ``"tokens"``
            or [`Tokens`][normgrad.Tokens]; one for every layer or a dict by layer name. On
            tokens the VIL acts on the patch grid (prefix tokens dropped): a linear layer on
            each token is a 1x1 convolution on the grid, a KxK VIL a KxK patch of it.

    Shape:
        - x: ``(N, C, H, W)`` (or ``(N, C, D, H, W)``), floating point, finite.
        - returns: ``(N, 1, H, W)``, values in ``[0, 1]``, float32 for half-precision
          inputs, else the input's dtype.

    Examples:
        >>> import torch, torchvision
        >>> import normgrad
        >>> model = torchvision.models.resnet18(num_classes=4)
        >>> explainer = normgrad.NormGrad(
        ...     model, layers=["layer3.0", "layer4.1"], vil="conv3x3"
        ... )
        >>> x = torch.randn(2, 3, 64, 64)
        >>> saliency = explainer(x, target=1)
        >>> saliency.shape, bool(saliency.min() >= 0), bool(saliency.max() <= 1)
        (torch.Size([2, 1, 64, 64]), True, True)
        >>> sorted(explainer.explain(x).layer_maps)
        ['layer3.0', 'layer4.1']
    """

    def __init__(
        self, model: nn.Module, layers: Layers, vil: str = "conv3x3", *, layout: Layouts = None
    ) -> None:
        super().__init__(model)
        self.layers = resolve_layers(self.model, layers)
        self.vil = parse_vil(vil)
        self.layouts = layouts_for(self.layer_names, layout)

    @property
    def layer_names(self) -> list[str]:
        """The dotted names of the hooked layers, in the order given."""
        return [name for name, _ in self.layers]

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``x``; the result holds the fused map and every layer's map.

        Returns:
            [`Explanation`][normgrad.Explanation] with ``saliency`` ``(N, 1, *spatial)`` in
            ``[0, 1]``, ``layer_maps`` (normalised, upsampled, by layer name),
            ``raw_layer_maps`` (raw, at each layer's resolution) and, for a single layer,
            ``raw`` (upsampled, unnormalised).
        """
        return super().explain(x, target)

    def _needs(self) -> PassNeeds:
        return PassNeeds(layers=tuple(self.layers), layouts=tuple(self.layouts))

    def _check(self, x: torch.Tensor) -> None:
        if isinstance(x, torch.Tensor):  # capture checks x itself; the VIL before the pass
            self.vil.check_dims(x.ndim - 2, "x", x.shape)

    def _assemble(self, x: torch.Tensor, passes: Passes) -> Explanation:
        layers = {
            name: passes.derived(
                ("normgrad", name, self.vil),
                functools.partial(normgrad_map, *passes.layers[name], self.vil),
            )
            for name in self.layer_names
        }
        return build_explanation(x.shape[2:], passes.classes, layers=layers)

    def __repr__(self) -> str:
        names = self.layer_names
        shown = names[0] if len(names) == 1 else names
        return f"NormGrad({type(self.model).__name__}, layers={shown!r}, vil={self.vil.name!r})"
