r"""Grad-CAM and Guided Grad-CAM (Selvaraju et al., 2017)."""

from __future__ import annotations

import torch
from torch import nn

from .._model.layers import LayerSpec, single_layer
from .._model.layouts import Layouts, layouts_for
from ..functional import grad_cam_map, reduce_channels, upsample
from .base import Explainer, Explanation, Passes, PassNeeds, build_explanation


class GradCAM(Explainer):
    r"""Grad-CAM: $\mathrm{ReLU}(\sum_k \alpha_k A_k)$.

    $\alpha_k = \mathrm{mean}_u \, \partial s / \partial A_{k,u}$.

    ``A`` is the output of ``layer`` (the paper uses the last convolutional block,
    ``layer4.2`` of a ResNet-50, ``features.8.2`` of an EfficientNet-B0), ``s`` the target's
    raw logit. The map is computed at the layer's resolution (``raw_layer_maps[layer]``),
    upsampled bilinearly (``align_corners=False``) to the input (``raw``), then min-max
    normalised (``saliency``, also ``layer_maps[layer]``). The signed map before the ReLU
    is [`functional.grad_cam_map`][normgrad.functional.grad_cam_map] of the layer's activation and
    gradient.

    The residual addition of a ResNet block is part of the block's output, so hooking
    ``layer4.2`` sees it (the public reference code hooked before it).

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.GradCAM(model, "layer4.1")(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, model: nn.Module, layer: LayerSpec, *, layout: Layouts = None) -> None:
        super().__init__(model)
        self.layer = single_layer(self.model, layer)
        self.layout = layouts_for([self.layer[0]], layout)[0]

    def _needs(self) -> PassNeeds:
        return PassNeeds(layers=(self.layer,), layouts=(self.layout,))

    def _cam(self, passes: Passes) -> torch.Tensor:
        """The class activation map at the layer's resolution, after its ReLU."""
        name = self.layer[0]
        return passes.derived(
            ("grad-cam", name), lambda: grad_cam_map(*passes.layers[name]).clamp_min(0)
        )

    def _assemble(self, x: torch.Tensor, passes: Passes) -> Explanation:
        return build_explanation(
            x.shape[2:], passes.classes, layers={self.layer[0]: self._cam(passes)}
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, layer={self.layer[0]!r})"


class GuidedGradCAM(GradCAM):
    r"""Guided Grad-CAM: $\sum_c |\mathrm{GB}_c \cdot \mathrm{up}(\mathrm{GradCAM})|$.

    The Grad-CAM map (ReLU, bilinear upsampling, not normalised) times the Guided
    Backpropagation gradient, then the channel reduction. One forward pass and two
    backward passes: Grad-CAM needs the plain gradient at ``layer``, Guided
    Backpropagation the guided one at the input.
    ``attribution`` is the signed product ``(N, C, *spatial)``; ``layer_maps`` and
    ``raw_layer_maps`` hold the Grad-CAM map of ``layer``.

    Captum's ``GuidedGradCam`` upsamples with ``nearest`` by default; normgrad uses bilinear
    upsampling, like its Grad-CAM (Captum agrees with ``interpolate_mode="bilinear"``).
    """

    def _needs(self) -> PassNeeds:
        return PassNeeds(layers=(self.layer,), layouts=(self.layout,), guided=True)

    def _assemble(self, x: torch.Tensor, passes: Passes) -> Explanation:
        assert passes.guided_gradient is not None
        cam = self._cam(passes)
        attribution = passes.guided_gradient * upsample(cam, x.shape[2:])
        return build_explanation(
            x.shape[2:],
            passes.classes,
            raw=reduce_channels(attribution),
            layers={self.layer[0]: cam},
            attribution=attribution,
        )
