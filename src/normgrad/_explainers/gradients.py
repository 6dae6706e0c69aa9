r"""Input-gradient baselines: Gradient, Input × Gradient and Guided Backpropagation."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .._model.capture import Capture, capture
from .._model.targets import ResolvedTarget, Target
from ..functional import reduce_channels
from .base import Explainer, Explanation, build_explanation


class Gradient(Explainer):
    r"""Gradient saliency (Simonyan et al., 2014): $\sum_c |\partial s / \partial x_c|$.

    ``s`` is the target's raw logit. ``raw`` is the channel-reduced map before min-max
    normalisation; ``attribution`` is the signed gradient ``(N, C, *spatial)``.

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.Gradient(model)(torch.randn(2, 3, 32, 32), target=0).shape
        torch.Size([2, 1, 32, 32])
    """

    def _pass(self, x: torch.Tensor, target: Target | ResolvedTarget) -> Capture:
        return capture(self.model, x, [], target, input_gradient=True)

    def _attribution(self, x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The signed attribution ``(N, C, *spatial)`` made of the input and its gradient."""
        return gradient

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        result = self._pass(x, target)
        assert result.input_gradient is not None
        attribution = self._attribution(x, result.input_gradient)
        return build_explanation(
            x.shape[2:], result.classes, raw=reduce_channels(attribution), attribution=attribution
        )


class InputXGradient(Gradient):
    r"""Input × Gradient (Shrikumar et al., 2016): $\sum_c |x_c \partial s / \partial x_c|$.

    ``attribution`` is the signed product ``x ⊙ ∂s/∂x`` ``(N, C, *spatial)``.
    """

    def _attribution(self, x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return x.detach() * gradient


class GuidedBackprop(Gradient):
    r"""Guided Backpropagation (Springenberg et al., 2015), reduced by $\sum_c |\cdot|$.

    Every ReLU backpropagates only positive gradients, and only where its input was
    positive: $\mathrm{grad_{in}} = \max(\mathrm{grad_{out}}, 0) \cdot [x > 0]$.
    ReLU modules (in place or not) and ``torch.relu`` / ``F.relu`` / ``Tensor.relu`` calls
    inside ``forward`` are all guided, through a thread-local torch function mode: no
    module is swapped and nothing global is patched, so the model is bit-identical
    afterwards, also after an error.

    Other activations are not guided (as in Captum): SiLU in EfficientNet, GELU, LeakyReLU
    and ReLU6 backpropagate as usual. A model with no ReLU at all gets the plain gradient,
    with a warning.
    """

    def _pass(self, x: torch.Tensor, target: Target | ResolvedTarget) -> Capture:
        return guided_pass(self.model, x, target)


def guided_pass(model: nn.Module, x: torch.Tensor, target: Target | ResolvedTarget) -> Capture:
    """The input gradient with guided ReLUs (Guided Backprop, Guided Grad-CAM); warns when
    no ReLU ran, since the result is then the plain gradient."""
    result = capture(model, x, [], target, input_gradient=True, guided=True)
    if result.guided_relus == 0:
        warnings.warn(
            f"GuidedBackprop: no ReLU ran in the forward pass of {type(model).__name__}; "
            "the result is the plain gradient (other activations are not guided)",
            stacklevel=4,
        )
    return result
