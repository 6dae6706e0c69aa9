r"""Input-gradient baselines: Gradient, Input × Gradient and Guided Backpropagation."""

from __future__ import annotations

import torch

from ..functional import reduce_channels
from .base import Explainer, Explanation, Passes, PassNeeds, build_explanation


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

    def _needs(self) -> PassNeeds:
        return PassNeeds(input_gradient=True)

    def _gradient(self, passes: Passes) -> torch.Tensor:
        assert passes.input_gradient is not None
        return passes.input_gradient

    def _attribution(self, x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The signed attribution ``(N, C, *spatial)`` made of the input and its gradient."""
        return gradient

    def _assemble(self, x: torch.Tensor, passes: Passes) -> Explanation:
        attribution = self._attribution(x, self._gradient(passes))
        return build_explanation(
            x.shape[2:], passes.classes, raw=reduce_channels(attribution), attribution=attribution
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

    def _needs(self) -> PassNeeds:
        return PassNeeds(guided=True)

    def _gradient(self, passes: Passes) -> torch.Tensor:
        assert passes.guided_gradient is not None
        return passes.guided_gradient
