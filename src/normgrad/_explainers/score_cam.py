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
from .._model.outputs import read_logits
from .._model.per_class import class_scores, classes_per_sample
from .._model.targets import ClassTarget, ResolvedTarget, ScoreTarget
from ..functional import is_constant, score_cam_map, score_cam_masks
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

    **Cost.** Per image: at most ``C + 1`` forward passes, all without a graph and no
    backward pass: one to record the activation and the classes explained
    (``target=None``: the class predicted for the unmasked image, which every masked copy
    is scored for), then one per channel; ``C`` is the layer's number of channels (512 for
    ``layer4`` of a ResNet-18, 2048 of a ResNet-50). A channel constant in an image (a
    ReLU channel that never fired, common in trained networks) masks it to zeros, the
    same input for every such (image, channel) pair: with class targets the zero image is
    scored once per call for all of them, and only the other pairs are run (their number
    is read from the device once per call). A callable target is called on whole copies
    of the batch, every channel run. The masked inputs are run ``batch_size`` images per
    model call, so memory does not grow with ``C``; the result does not depend on
    ``batch_size``. A target of ``K`` classes per sample ``(N, K)`` scores every class
    from the same masked inputs: no more passes than one class.

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
        masked inputs)."""
        if isinstance(target, ScoreTarget):
            return self._copy_scores(x, activation, target)
        return self._pair_scores(x, activation, target)

    def _copy_scores(
        self, x: torch.Tensor, activation: torch.Tensor, target: ScoreTarget
    ) -> torch.Tensor:
        """Scores for a callable target: the masks of a run of channels at a time, each
        channel's copy of the batch in turn (a copy is the batch, as a callable expects)."""
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

    def _pair_scores(
        self, x: torch.Tensor, activation: torch.Tensor, target: ClassTarget
    ) -> torch.Tensor:
        """Scores for class targets, one (image, channel) pair per masked input, channel
        after channel. A channel constant in an image masks it to zeros, the same input
        for every such pair: the zero image is scored once for them all (the first row of
        the first model call), and only the other pairs are run (their number read from the
        device once per call)."""
        n, channels = activation.shape[:2]
        flat = activation.flatten(0, 1).unsqueeze(1)  # (N * C, 1, *spatial)
        constant = is_constant(flat).view(n, channels)
        pairs = (~constant).transpose(0, 1).nonzero()  # (P, 2): channel, image; one read
        zero = int(len(pairs) < n * channels)  # 1: the zero image runs first
        classes = target.classes
        assert classes is not None  # fixed by the recording pass
        classes = classes.expand(n) if classes.ndim == 0 else classes
        first = min(self.batch_size, len(pairs) + zero) - zero  # pairs beside the zero
        whole, last = divmod(len(pairs) - first, self.batch_size)
        sizes = [first] + [self.batch_size] * whole + ([last] if last else [])
        scores: torch.Tensor | None = None
        with explaining(self.model), torch.no_grad():
            for i, part in enumerate(torch.split(pairs, sizes)):
                channel, image = part[:, 0], part[:, 1]
                masks = score_cam_masks(activation[image, channel].unsqueeze(1), x.shape[2:])
                masked = masks.to(x.dtype) * x[image]
                lead = zero if i == 0 else 0
                if lead:
                    masked = torch.cat([torch.zeros_like(x[:1]), masked])
                logits = read_logits(forward(self.model, masked))
                if lead:  # the zero image's scores, for every image's classes
                    base, _ = class_scores(logits[:1].expand(n, -1), ClassTarget(classes), n)
                    scores = base.unsqueeze(1).repeat(1, channels, *[1] * (base.ndim - 1))
                if not len(part):  # the zero image alone (one image per model call)
                    continue
                score, _ = class_scores(logits[lead:], ClassTarget(classes[image]), len(part))
                if scores is None:
                    scores = score.new_empty((n, channels, *score.shape[1:]))
                scores[image, channel] = score
        assert scores is not None  # at least one pair, or the zero image
        return scores

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.model).__name__}, layer={self.layer[0]!r}, "
            f"batch_size={self.batch_size})"
        )
