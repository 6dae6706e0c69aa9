"""normgrad: NormGrad saliency maps for image classifiers, with baselines and metrics.

Examples:
    >>> import torch, torchvision, normgrad
    >>> model = torchvision.models.resnet18(num_classes=2)
    >>> explainer = normgrad.NormGrad(model, layers="layer4.1", vil="conv1x1")
    >>> explainer(torch.randn(1, 3, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
"""

from __future__ import annotations

from . import functional, metrics, presets, sanity
from ._errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    LayerError,
    NonFiniteError,
    NormGradError,
    ShapeError,
    UnsupportedModelError,
)
from ._evaluation.distributed import DistributedEvaluationError, ShardSampler
from ._evaluation.records import read_records
from ._evaluation.result import EvaluationResult, MethodScore, Record
from ._evaluation.runner import evaluate
from ._explainers.attention import AttentionRollout, TransformerAttribution
from ._explainers.base import Explainer, Explanation
from ._explainers.cams import EigenCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from ._explainers.center import CenterMap
from ._explainers.gradcam import GradCAM, GuidedGradCAM
from ._explainers.gradients import Gradient, GuidedBackprop, InputXGradient
from ._explainers.normgrad import NormGrad
from ._explainers.occlusion import Occlusion
from ._explainers.perturbation import IntegratedGradients, SmoothGrad
from ._explainers.rise import RISE
from ._explainers.score_cam import ScoreCAM
from ._explainers.shared import explain_shared
from ._model.layers import Layers, LayerSpec
from ._model.layouts import Layout, Tokens
from ._model.segmentation import SegmentationTarget
from ._model.targets import Target

__version__ = "0.1.0"


# old name -> new name: "baseline" names one thing, the input that replaces removed pixels
_RENAMED = {"CenterBaseline": "CenterMap"}


def __getattr__(name: str) -> object:
    # normgrad.viz needs matplotlib (the ``viz`` extra): imported on first use only.
    if name == "viz":
        import importlib

        return importlib.import_module(".viz", __name__)
    if name in _RENAMED:  # the old names, for one release
        from ._errors import warn_renamed

        new = _RENAMED[name]
        warn_renamed(f"normgrad.{name}", f"normgrad.{new}")
        return globals()[new]
    raise AttributeError(f"module 'normgrad' has no attribute {name!r}")


__all__ = [
    "ArgumentTypeError",
    "AttentionRollout",
    "CenterMap",
    "DistributedEvaluationError",
    "EigenCAM",
    "EvaluationResult",
    "Explainer",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputXGradient",
    "IntegratedGradients",
    "InvalidArgumentError",
    "LayerCAM",
    "LayerError",
    "LayerSpec",
    "Layers",
    "Layout",
    "MethodScore",
    "NonFiniteError",
    "NormGrad",
    "NormGradError",
    "Occlusion",
    "RISE",
    "Record",
    "ScoreCAM",
    "SegmentationTarget",
    "ShapeError",
    "ShardSampler",
    "SmoothGrad",
    "Target",
    "Tokens",
    "TransformerAttribution",
    "UnsupportedModelError",
    "XGradCAM",
    "__version__",
    "evaluate",
    "explain_shared",
    "functional",
    "metrics",
    "presets",
    "read_records",
    "sanity",
]
