r"""Input-gradient baselines: Gradient, Input × Gradient and Guided Backpropagation."""

from __future__ import annotations

import warnings

import torch

from . import functional as F
from ._base import Explainer, Explanation, explanation_from_raw
from ._capture import capture
from ._guided import GuidedReLUs
from ._target import Target


class Gradient(Explainer):
    r"""Gradient saliency (Simonyan et al., 2014): :math:`\sum_c |\partial s / \partial x_c|`.

    ``s`` is the target's raw logit. ``raw`` is the channel-reduced map before min-max
    normalisation; ``attribution`` is the signed gradient ``(N, C, *spatial)``.

    Example:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.Gradient(model)(torch.randn(2, 3, 32, 32), target=0).shape
        torch.Size([2, 1, 32, 32])
    """

    def _input_gradient(
        self, x: torch.Tensor, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        result = capture(self.model, x, [], target, input_gradient=True)
        assert result.input_gradient is not None
        return result.input_gradient, result.target

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        grad, classes = self._input_gradient(x, target)
        return explanation_from_raw(F.reduce_channels(grad), classes, grad)


class InputXGradient(Gradient):
    r"""Input × Gradient (Shrikumar et al., 2016): :math:`\sum_c |x_c \partial s / \partial x_c|`.

    ``attribution`` is the signed product ``x ⊙ ∂s/∂x`` ``(N, C, *spatial)``.
    """

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        grad, classes = self._input_gradient(x, target)
        attribution = x.detach() * grad
        return explanation_from_raw(F.reduce_channels(attribution), classes, attribution)


class GuidedBackprop(Gradient):
    r"""Guided Backpropagation (Springenberg et al., 2015), reduced by :math:`\sum_c |\cdot|`.

    Every ReLU backpropagates only positive gradients, and only where its input was
    positive: :math:`\mathrm{grad_{in}} = \max(\mathrm{grad_{out}}, 0) \cdot [x > 0]`.
    ReLU modules (in place or not) and ``torch.relu`` / ``F.relu`` / ``Tensor.relu`` calls
    inside ``forward`` are all guided, through a thread-local torch function mode: no
    module is swapped and nothing global is patched, so the model is bit-identical
    afterwards, also after an error.

    Other activations are not guided (as in Captum): SiLU in EfficientNet, GELU, LeakyReLU
    and ReLU6 backpropagate as usual. A model with no ReLU at all gets the plain gradient,
    with a warning.
    """

    def _input_gradient(
        self, x: torch.Tensor, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        guided = GuidedReLUs()
        result = capture(self.model, x, [], target, input_gradient=True, backward_context=guided)
        if guided.count == 0:
            warnings.warn(
                f"GuidedBackprop: no ReLU ran in the forward pass of {type(self.model).__name__}; "
                "the result is the plain gradient (other activations are not guided)",
                stacklevel=3,
            )
        assert result.input_gradient is not None
        return result.input_gradient, result.target
