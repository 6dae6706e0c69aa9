"""Every explainer of the library, built the same way, for tests that cover them all."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

import normgrad

Factory = Callable[[nn.Module, list[str]], normgrad.Explainer]

EXPLAINERS: dict[str, Factory] = {
    "normgrad": lambda m, layers: normgrad.NormGrad(m, layers, "conv3x3"),
    "gradient": lambda m, layers: normgrad.Gradient(m),
    "input-x-gradient": lambda m, layers: normgrad.InputXGradient(m),
    "guided-backprop": lambda m, layers: normgrad.GuidedBackprop(m),
    "grad-cam": lambda m, layers: normgrad.GradCAM(m, layers[-1]),
    "guided-grad-cam": lambda m, layers: normgrad.GuidedGradCAM(m, layers[-1]),
    "smoothgrad": lambda m, layers: normgrad.SmoothGrad(
        normgrad.NormGrad(m, layers), n_samples=3, batch_size=2
    ),
    "integrated-gradients": lambda m, layers: normgrad.IntegratedGradients(m, steps=4),
    "grad-cam++": lambda m, layers: normgrad.GradCAMPlusPlus(m, layers[-1]),
    "xgrad-cam": lambda m, layers: normgrad.XGradCAM(m, layers[-1]),
    "layer-cam": lambda m, layers: normgrad.LayerCAM(m, layers[-1]),
    "hires-cam": lambda m, layers: normgrad.HiResCAM(m, layers[-1]),
    "eigen-cam": lambda m, layers: normgrad.EigenCAM(m, layers[-1]),
    "score-cam": lambda m, layers: normgrad.ScoreCAM(m, layers[-1], batch_size=16),
    # small settings: every input of the cross-cutting tests is at least 6 px a side
    "occlusion": lambda m, layers: normgrad.Occlusion(m, window=5, stride=5, batch_size=32),
    "rise": lambda m, layers: normgrad.RISE(m, n_masks=6, cell_size=4, batch_size=4),
}
