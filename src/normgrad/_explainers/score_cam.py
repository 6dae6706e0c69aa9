r"""Score-CAM (Wang et al., CVPR Workshops 2020): channels weighted by the scores of the
input masked by each of them."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_positive_int
from .._deferred import deferred_checks
from .._model.capture import capture
from .._model.diagnosis import forward
from .._model.hooks import explaining
from .._model.layers import LayerSpec, single_layer
from .._model.layouts import Layouts, layouts_for
from .._model.per_class import class_scores, classes_per_sample
from .._model.targets import ResolvedTarget
from ..functional import score_cam_map, score_cam_masks
from .base import Explainer, Explanation, build_explanation, per_class
from .perturbation import _chunks


class ScoreCAM(Explainer):
    r"""Score-CAM: $\mathrm{ReLU}(\sum_k w_k A_k)$, $w = \mathrm{softmax}_k(s(x \odot H_k))$.

    ``A`` is the output of ``layer`` ``(N, C, *spatial)``; $H_k$ is channel ``k``
    upsampled to the input ((bi/tri)linear, ``align_corners=False``) and min-max
    normalised to ``[0, 1]``
    ([`functional.score_cam_masks`][normgrad.functional.score_cam_masks]); $s$ is the
    target's score (the raw logit, or the callable's score) of the masked input. The
    softmax over the channels is the paper's normalisation of the scores, and makes its
    increase of confidence over a reference input, $s - s_{\mathrm{ref}}$, the same weights
    (see [`functional.score_cam_map`][normgrad.functional.score_cam_map]). No gradient is
    used in the weights.

    **Cost.** Per image: ``C + 1`` forward passes, all without a graph and no backward
    pass: one to record the activation and the classes explained (``target=None``: the
    class predicted for the unmasked image, which every masked copy is scored for), then
    one per channel; ``C`` is the layer's number
    of channels (512 for ``layer4`` of a ResNet-18, 2048 of a ResNet-50). The masked
    inputs are run ``batch_size`` images per model call (at least one channel's masked
    copies of the whole batch), so memory does not grow with ``C``; the result does not
    depend on ``batch_size``. A target of ``K`` classes per sample ``(N, K)`` scores every
    class from the same masked inputs: no more passes than one class.

    Differs from pytorch-grad-cam's ``ScoreCAM`` only by the masks' upsampling
    (``align_corners=True`` there) and its $10^{-8}$ in the masks' normalisation; it
    takes 2-D inputs only, normgrad 1-D to 3-D inputs and token layers.

    Args:
        model: the classifier.
        layer: one layer (name or module), e.g. ``"layer4.1"``.
        layout: the layer output's layout, as in [`GradCAM`][normgrad.GradCAM].
        batch_size: images per model call for the masked inputs.

    ``raw_layer_maps[layer]`` is the map at the layer's resolution after its ReLU; the
    saliency is that map upsampled and min-max normalised.

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> normgrad.ScoreCAM(model, "layer3.1")(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(
        self, model: nn.Module, layer: LayerSpec, *, layout: Layouts = None, batch_size: int = 64
    ) -> None:
        super().__init__(model)
        self.layer = single_layer(self.model, layer)
        self.layout = layouts_for([self.layer[0]], layout)[0]
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        name = self.layer[0]
        with deferred_checks():  # every check of the call read once, at its end
            recorded = capture(
                self.model, x, [self.layer], target, layouts=[self.layout], gradients=False
            )
            activation = recorded.activations[0]
            fixed = target.fixed(recorded.classes)
            scores = self._scores(x, activation, fixed)  # (N, C), or (N, C, K)
            k = classes_per_sample(fixed)
            if k:  # K classes per sample: rows n * K + j, each class its own weights
                activation = activation.repeat_interleave(k, 0)
                scores = scores.permute(0, 2, 1).flatten(0, 1)
            cam = score_cam_map(activation, scores).clamp_min(0)
            explanation = build_explanation(x.shape[2:], recorded.classes, layers={name: cam})
            return per_class(explanation, k) if k else explanation

    def _scores(
        self, x: torch.Tensor, activation: torch.Tensor, target: ResolvedTarget
    ) -> torch.Tensor:
        """The target's score of ``x`` masked by each channel of ``activation``,
        ``(N, C)`` (``(N, C, K)`` for ``K`` classes per sample, scored from the same
        masked inputs): the masks of a run of channels at a time, each channel's copy of the
        batch in turn (a copy is the batch, as a callable target expects)."""
        n, channels = activation.shape[:2]
        scores = []
        with explaining(self.model), torch.no_grad():
            for start, stop, run_target in _chunks(channels, n, self.batch_size, target):
                # masks (channels, N, *size): made in the order the model runs them, so the
                # masked batch is contiguous as it is made (each channel, the whole batch)
                masks = score_cam_masks(activation[:, start:stop].transpose(0, 1), x.shape[2:])
                masked = (masks.unsqueeze(2).to(x.dtype) * x.unsqueeze(0)).flatten(0, 1)
                score, _ = class_scores(forward(self.model, masked), run_target, len(masked))
                scores.append(score.reshape(stop - start, n, *score.shape[1:]))
        return torch.cat(scores).transpose(0, 1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.model).__name__}, layer={self.layer[0]!r}, "
            f"batch_size={self.batch_size})"
        )
