r"""The gradient class activation maps beyond Grad-CAM: Grad-CAM++, XGrad-CAM, LayerCAM,
HiResCAM and Eigen-CAM, served from the shared pass like Grad-CAM."""

from __future__ import annotations

import torch

from ..functional import (
    eigen_cam_map,
    grad_cam_plus_plus_map,
    hires_cam_map,
    layer_cam_map,
    xgrad_cam_map,
)
from .base import Passes
from .gradcam import GradCAM


class _SignedCAM(GradCAM):
    """A class activation map of one layer: ``ReLU`` of a signed map of the layer's
    activation and gradient, computed once per batch for every explainer that reads it;
    everything else (layer, layout, upsampling, normalisation) is Grad-CAM's."""

    def _signed(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _cam(self, passes: Passes) -> torch.Tensor:
        name = self.layer[0]
        key = (type(self).__name__, name)
        return passes.derived(key, lambda: self._signed(*passes.layers[name]).clamp_min(0))


class GradCAMPlusPlus(_SignedCAM):
    r"""Grad-CAM++ (Chattopadhyay et al., WACV 2018): $\mathrm{ReLU}(\sum_k w_k A_k)$.

    $w_k = \sum_u \alpha_{k,u} \mathrm{ReLU}(g_{k,u})$,
    $\alpha_{k,u} = g_{k,u}^2 / (2 g_{k,u}^2 + g_{k,u}^3 \sum_v A_{k,v})$
    ($0$ where the denominator is $0$), $g = \partial s / \partial A$.

    **Which formula.** The paper's general weights need the second and third derivatives
    of the explained output; normgrad implements the paper's closed form for an
    exponential output $Y = e^{s}$ of the raw logit $s$ (its Eq. 19), exact for a network
    that is piecewise linear after ``layer`` (ReLU), as pytorch-grad-cam does: it needs
    only the gradient, so it is served from the shared pass (no extra pass, no
    second-order autograd). pytorch-grad-cam adds $10^{-6}$ to the denominator; normgrad
    does not, so the two agree where the denominator is far from $10^{-6}$ and differ
    where the gradients are of order $10^{-3}$ or smaller. Unlike Grad-CAM, the map
    depends on the score's scale (the weights are not homogeneous in $g$).

    ``layer``, ``layout`` and the result's fields are as in
    [`GradCAM`][normgrad.GradCAM]; the signed map is
    [`functional.grad_cam_plus_plus_map`][normgrad.functional.grad_cam_plus_plus_map].

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> x = torch.randn(2, 3, 64, 64)
        >>> normgrad.GradCAMPlusPlus(model, "layer4.1")(x).shape
        torch.Size([2, 1, 64, 64])
    """

    def _signed(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return grad_cam_plus_plus_map(activation, gradient)


class XGradCAM(_SignedCAM):
    r"""XGrad-CAM (Fu et al., BMVC 2020): $\mathrm{ReLU}(\sum_k w_k A_k)$.

    $w_k = \sum_u \dfrac{A_{k,u}}{\sum_v A_{k,v}} g_{k,u}$ ($0$ for a channel whose
    activations sum to $0$), $g = \partial s / \partial A$: the gradient averaged with the
    activation's own weights. pytorch-grad-cam adds $10^{-7}$ to the channel's sum.

    ``layer``, ``layout`` and the result's fields are as in
    [`GradCAM`][normgrad.GradCAM]; the signed map is
    [`functional.xgrad_cam_map`][normgrad.functional.xgrad_cam_map].

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.XGradCAM(model, "layer4.1")(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def _signed(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return xgrad_cam_map(activation, gradient)


class LayerCAM(_SignedCAM):
    r"""LayerCAM (Jiang et al., IEEE TIP 2021):
    $\mathrm{ReLU}(\sum_k \mathrm{ReLU}(g_k) \odot A_k)$, $g = \partial s / \partial A$.

    Each position is weighted by its own positive gradient, so earlier, finer layers give
    usable maps too (the paper fuses several; normgrad explains one ``layer``, fuse the
    maps yourself). ``layer``, ``layout`` and the result's fields are as in
    [`GradCAM`][normgrad.GradCAM]; the signed map is
    [`functional.layer_cam_map`][normgrad.functional.layer_cam_map].

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.LayerCAM(model, "layer3.1")(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def _signed(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return layer_cam_map(activation, gradient)


class HiResCAM(_SignedCAM):
    r"""HiResCAM (Draelos and Carin, 2020): $\mathrm{ReLU}(\sum_k g_k \odot A_k)$,
    $g = \partial s / \partial A$.

    Grad-CAM without the spatial mean of the gradient: for a layer followed only by a
    global average pooling and a linear head it equals Grad-CAM; elsewhere each position
    keeps its own gradient. The ReLU keeps the positive evidence, as Grad-CAM and
    pytorch-grad-cam do (the paper also shows the signed map:
    [`functional.hires_cam_map`][normgrad.functional.hires_cam_map]). ``layer``, ``layout``
    and the result's fields are as in [`GradCAM`][normgrad.GradCAM].

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.HiResCAM(model, "layer4.1")(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def _signed(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return hires_cam_map(activation, gradient)


class EigenCAM(_SignedCAM):
    r"""Eigen-CAM (Muhammad and Yeasin, IJCNN 2020): $\mathrm{ReLU}(X v_1)$.

    $X$ is the layer's activation as a ``(positions, C)`` matrix centred per channel, $v_1$
    its first right singular vector (the first principal component), signed so that
    $\sum_k v_{1,k} \ge 0$ (see
    [`functional.eigen_cam_map`][normgrad.functional.eigen_cam_map]; pytorch-grad-cam keeps
    numpy's arbitrary sign, so its map is this one or the ReLU of its negation).

    Class-agnostic: the map does not depend on ``target`` (``classes`` still says which
    class the pass scored). It is served from the shared pass, so alone it costs the pass
    Grad-CAM costs (its backward pass is unused), with others it costs nothing more.
    ``layer``, ``layout`` and the result's fields are as in [`GradCAM`][normgrad.GradCAM].

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.EigenCAM(model, "layer4.1")(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def _signed(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return eigen_cam_map(activation)
