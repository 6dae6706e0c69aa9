r"""NormGrad (Rebuffi et al., CVPR 2020) on one layer or several fused by geometric mean."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._errors import ArgumentTypeError, InvalidArgumentError, describe
from .._model.capture import capture
from .._model.layers import Layers, resolve_layers
from .._model.layouts import Layout, Layouts, layouts_for
from .._model.targets import Target
from ..functional import VIL, normgrad_map, parse_vil
from .base import Explainer, Explanation, build_explanation


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
        >>> explainer = normgrad.NormGrad(model, layers=["layer3.0", "layer4.1"], vil="conv3x3")
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
        return explain_shared([self], x, target)[0]

    def __repr__(self) -> str:
        names = self.layer_names
        shown = names[0] if len(names) == 1 else names
        return f"NormGrad({type(self.model).__name__}, layers={shown!r}, vil={self.vil.name!r})"


def explain_shared(
    explainers: Sequence[NormGrad], x: torch.Tensor, target: Target = None
) -> list[Explanation]:
    """Explain ``x`` with several NormGrad explainers of one model in one pass.

    The union of their layers is captured by a single forward and backward pass; each
    explainer's VIL and fusion are then applied to its own layers. The results equal calling
    each explainer on its own.

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> variants = [normgrad.NormGrad(model, "layer4.1", vil) for vil in ("scaling", "conv1x1")]
        >>> results = normgrad.explain_shared(variants, torch.randn(1, 3, 64, 64))
        >>> len(results), tuple(results[1].saliency.shape)
        (2, (1, 1, 64, 64))
    """
    if not explainers:
        return []
    model = explainers[0].model
    for e in explainers:
        if not isinstance(e, NormGrad):
            raise ArgumentTypeError(f"explainers: expected NormGrad explainers, got {describe(e)}")
        if e.model is not model:
            raise InvalidArgumentError("explainers: expected explainers of one and the same model")
    union: dict[str, nn.Module] = {}
    layouts: dict[str, Layout] = {}
    for e in explainers:
        if isinstance(x, torch.Tensor):  # capture checks x itself; the VIL before the pass
            e.vil.check_dims(x.ndim - 2, "x", x.shape)
        for (name, module), layout in zip(e.layers, e.layouts):
            union.setdefault(name, module)
            if layouts.setdefault(name, layout) != layout:
                raise InvalidArgumentError(
                    f"explainers: layer {name!r} is given two layouts, {layouts[name]!r} and "
                    f"{layout!r}; state one"
                )
    result = capture(model, x, list(union.items()), target, layouts=list(layouts.values()))
    captured = dict(zip(union, zip(result.activations, result.gradients)))
    cache: dict[tuple[str, VIL], torch.Tensor] = {}
    explanations = []
    for e in explainers:
        for name in e.layer_names:
            if (name, e.vil) not in cache:
                cache[name, e.vil] = normgrad_map(*captured[name], e.vil)
        layers = {name: cache[name, e.vil] for name in e.layer_names}
        explanations.append(build_explanation(x.shape[2:], result.classes, layers=layers))
    return explanations
