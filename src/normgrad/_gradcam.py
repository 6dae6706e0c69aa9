r"""Grad-CAM and Guided Grad-CAM (Selvaraju et al., 2017)."""

from __future__ import annotations

import torch
from torch import nn

from . import functional as F
from ._base import Explainer, Explanation, explanation_from_raw
from ._capture import capture
from ._errors import LayerError
from ._gradients import GuidedBackprop
from ._model import LayerSpec, resolve_layers
from ._target import Target


def _single_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    layers = resolve_layers(model, layer, argument="layer")
    if len(layers) != 1:
        raise LayerError(f"layer: expected one layer, got {len(layers)}")
    return layers[0]


class GradCAM(Explainer):
    r"""Grad-CAM: :math:`\mathrm{ReLU}(\sum_k \alpha_k A_k)`.

    :math:`\alpha_k = \mathrm{mean}_u \, \partial s / \partial A_{k,u}`.

    ``A`` is the output of ``layer`` (the paper uses the last convolutional block,
    ``layer4.2`` of a ResNet-50, ``features.8.2`` of an EfficientNet-B0), ``s`` the target's
    raw logit. The map is computed at the layer's resolution, upsampled bilinearly
    (``align_corners=False``) to the input, then min-max normalised. ``raw`` is the
    upsampled map before normalisation and ``attribution`` the signed map before the ReLU,
    at the layer's resolution.

    The residual addition of a ResNet block is part of the block's output, so hooking
    ``layer4.2`` sees it (the public reference code hooked before it).

    Example:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.GradCAM(model, "layer4.1")(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, model: nn.Module, layer: LayerSpec) -> None:
        super().__init__(model)
        self.layer = _single_layer(self.model, layer)

    def _cam(
        self, x: torch.Tensor, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        result = capture(self.model, x, [self.layer], target)
        signed = F.grad_cam_map(result.activations[0], result.gradients[0])
        return F.upsample(signed.clamp_min(0), x.shape[2:]), signed, result.target

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        cam, signed, classes = self._cam(x, target)
        return explanation_from_raw(cam, classes, signed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, layer={self.layer[0]!r})"


class GuidedGradCAM(GradCAM):
    r"""Guided Grad-CAM: :math:`\sum_c |\mathrm{GB}_c \cdot \mathrm{up}(\mathrm{GradCAM})|`.

    The Grad-CAM map (ReLU, bilinear upsampling, not normalised) times the Guided
    Backpropagation gradient, then the channel reduction. Two passes: Grad-CAM needs the
    plain gradient at ``layer``, Guided Backpropagation the guided one at the input.
    ``attribution`` is the signed product ``(N, C, *spatial)``.

    Captum's ``GuidedGradCam`` upsamples with ``nearest`` by default; normgrad uses bilinear
    upsampling, like its Grad-CAM (Captum agrees with ``interpolate_mode="bilinear"``).
    """

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        cam, _, classes = self._cam(x, target)
        guided = GuidedBackprop(self.model).explain(x, classes if classes is not None else target)
        assert guided.attribution is not None
        attribution = guided.attribution * cam
        return explanation_from_raw(F.reduce_channels(attribution), classes, attribution)
