"""The layers the paper uses, by architecture (torchvision module names).

Examples:
    >>> from normgrad import presets
    >>> presets.layers("resnet50").single
    'layer4.2'
    >>> presets.layers("resnet50").multi
    ['layer2.0', 'layer3.0', 'layer4.0', 'layer4.2']
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._errors import ArgumentTypeError, InvalidArgumentError, describe
from ._explainers.base import Explainer
from ._explainers.cams import EigenCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from ._explainers.gradcam import GradCAM, GuidedGradCAM
from ._explainers.gradients import GuidedBackprop, InputXGradient
from ._explainers.normgrad import NormGrad
from ._explainers.score_cam import ScoreCAM

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "LayerPreset",
    "available",
    "cam_methods",
    "hf_swin",
    "hf_vit",
    "layers",
    "paper_methods",
    "swin",
    "vit",
]


@dataclass(frozen=True)
class LayerPreset:
    """Layers for one architecture.

    Attributes:
        single: the last convolutional block (a transformer's last first norm):
            single-layer NormGrad, Grad-CAM and every other class activation map (see
            [`cam_methods`][normgrad.presets.cam_methods]).
        multi: the layers fused by multi-layer NormGrad ("M" in the paper's tables).
        source: where the choice comes from.
    """

    single: str
    multi: list[str] = field(default_factory=list)
    source: str = "paper"


def _resnet(last: str, source: str = "paper") -> LayerPreset:
    return LayerPreset(last, ["layer2.0", "layer3.0", "layer4.0", last], source)


def vit(depth: int) -> LayerPreset:
    """The ViT recipe for a torchvision ``VisionTransformer`` of ``depth`` blocks.

    Single: the last block's first norm (``ln_1``), the latest layer whose patch tokens
    still reach the class token. Multi: the outputs of the blocks ending the first
    quarter, half and three quarters of the encoder, then that norm. ``vit(12)`` is the
    ``vit_b_16`` preset.

    Examples:
        >>> from normgrad import presets
        >>> presets.vit(4).single
        'encoder.layers.encoder_layer_3.ln_1'
        >>> [name.split(".")[-1] for name in presets.vit(4).multi]
        ['encoder_layer_0', 'encoder_layer_1', 'encoder_layer_2', 'ln_1']
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 4:
        raise InvalidArgumentError(
            f"depth: expected the number of encoder blocks, an int >= 4 (one per quarter of "
            f"the encoder), got {depth!r}; for fewer blocks pass layer names yourself"
        )
    ends = (depth // 4, depth // 2, 3 * depth // 4)
    blocks = [f"encoder.layers.encoder_layer_{k - 1}" for k in ends]
    last = f"encoder.layers.encoder_layer_{depth - 1}.ln_1"
    return LayerPreset(last, [*blocks, last], "normgrad")


def swin(depths: Sequence[int]) -> LayerPreset:
    """The Swin recipe for a torchvision ``SwinTransformer`` (V1) with blocks ``depths``
    per stage.

    Single: the last block's first norm (``norm1``). Multi: the output of every earlier
    stage, then that norm. torchvision numbers the stages ``features.1, 3, 5, ...`` (patch
    merging between them). ``swin([2, 2, 6, 2])`` is the ``swin_t`` preset.

    Examples:
        >>> from normgrad import presets
        >>> presets.swin([1, 1, 2]).multi
        ['features.1', 'features.3', 'features.5.1.norm1']
    """
    depths = list(depths)
    if len(depths) < 2 or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths
    ):
        raise InvalidArgumentError(
            f"depths: expected the number of blocks of each stage, at least two stages of "
            f"ints >= 1, got {depths!r}"
        )
    stages = [f"features.{2 * i + 1}" for i in range(len(depths))]
    last = f"{stages[-1]}.{depths[-1] - 1}.norm1"
    return LayerPreset(last, [*stages[:-1], last], "normgrad")


def hf_vit(depth: int, base: str = "vit") -> LayerPreset:
    """The ViT recipe (as [`vit`][normgrad.presets.vit]) for a Hugging Face
    ``transformers`` ViT, DeiT or BEiT classifier of ``depth`` blocks.

    Single: the last block's first norm (``layernorm_before``), whose patch tokens still
    reach the class token. Multi: the outputs of the blocks ending the first quarter, half
    and three quarters of the encoder, then that norm. Names as ``transformers`` 5 writes
    them (``<base>.layers.<i>``); ``base`` is the backbone's attribute: ``"vit"``
    (``ViTForImageClassification``), ``"deit"`` or ``"beit"``. ``hf_vit(12)`` suits
    ``google/vit-base-patch16-224``.

    Examples:
        >>> from normgrad import presets
        >>> presets.hf_vit(4).single
        'vit.layers.3.layernorm_before'
        >>> presets.hf_vit(4, "deit").multi[:3]
        ['deit.layers.0', 'deit.layers.1', 'deit.layers.2']
    """
    torchvision_names = vit(depth)
    if not isinstance(base, str) or not base.isidentifier():
        raise InvalidArgumentError(
            f"base: expected the attribute holding the backbone, e.g. 'vit', 'deit' or "
            f"'beit', got {base!r}"
        )
    blocks = [
        name.replace("encoder.layers.encoder_layer_", f"{base}.layers.")
        for name in torchvision_names.multi[:-1]
    ]
    last = f"{base}.layers.{depth - 1}.layernorm_before"
    return LayerPreset(last, [*blocks, last], "normgrad")


def hf_swin(depths: Sequence[int]) -> LayerPreset:
    """The Swin recipe (as [`swin`][normgrad.presets.swin]) for a Hugging Face
    ``transformers`` ``SwinForImageClassification`` with blocks ``depths`` per stage.

    Single: the last block's first norm (``layernorm_before``, tokens ``(N, L, C)``).
    Multi: the output of every earlier stage before its patch merging, i.e. of its last
    block (a tuple, read through its first tensor), then that norm.
    ``hf_swin([2, 2, 6, 2])`` suits ``microsoft/swin-tiny-patch4-window7-224``.

    Examples:
        >>> from normgrad import presets
        >>> presets.hf_swin([1, 1, 2]).multi[:2]
        ['swin.encoder.layers.0.blocks.0', 'swin.encoder.layers.1.blocks.0']
        >>> presets.hf_swin([1, 1, 2]).single
        'swin.encoder.layers.2.blocks.1.layernorm_before'
    """
    depths = list(depths)
    swin(depths)  # the same checks of depths
    stages = [f"swin.encoder.layers.{i}.blocks.{d - 1}" for i, d in enumerate(depths)]
    last = f"{stages[-1]}.layernorm_before"
    return LayerPreset(last, [*stages[:-1], last], "normgrad")


_PRESETS: dict[str, LayerPreset] = {
    # the paper uses ResNet-34, ResNet-50 and EfficientNet-B0
    "resnet34": _resnet("layer4.2"),
    "resnet50": _resnet("layer4.2"),
    "efficientnet_b0": LayerPreset(
        "features.8.2", [f"features.{i}.0" for i in range(9)] + ["features.8.2"]
    ),
    # the same recipe on related architectures (normgrad's choice, not the paper's)
    "resnet18": _resnet("layer4.1", "normgrad"),
    "resnet101": _resnet("layer4.2", "normgrad"),
    "densenet121": LayerPreset(
        "features.denseblock4",
        [
            "features.transition1",
            "features.transition2",
            "features.transition3",
            "features.denseblock4",
        ],
        "normgrad",
    ),
    # Transformers (normgrad's choice). A ViT reads only the class token after its last
    # block, so the last block's output patch tokens get no gradient (an all-zero map): the
    # single layer is the last block's first norm, whose patch tokens reach the class
    # token through the last attention (pytorch-grad-cam's advice too). Multi-layer: the
    # outputs of blocks 3, 6 and 9 of 12, then that norm, like the paper's one layer per
    # ResNet stage. Measured on a small trained ViT (docs/transformers.md): 0.55 for the
    # last block's ln_1 and the block before it, 0 for the last block's output and ln_2.
    "vit_b_16": vit(12),
    "vit_b_32": vit(12),
    # Swin: the last block's first norm, measured best of the candidate layers on a small
    # trained Swin (docs/transformers.md: 0.24 against 0.05-0.13 for the last stage's
    # output and the final norm, which scored below their own randomised models); fused
    # with one layer per earlier stage, also measured best among the fusions tried. Swin V2
    # normalises after attention (post-norm), so its norm1 is not the same place: the last
    # block's input (features.7.0), by analogy, not measured.
    "swin_t": dataclasses.replace(swin([2, 2, 6, 2]), source="normgrad (measured)"),
    "swin_v2_t": LayerPreset(
        "features.7.0", ["features.1", "features.3", "features.5", "features.7.0"], "normgrad"
    ),
    # ConvNeXt is a CNN staged like a ResNet (strides 4 to 32): the paper's ResNet recipe,
    # the last stage alone or the first block of stages 2-4 plus the last stage; not
    # measured on a trained ConvNeXt.
    "convnext_tiny": LayerPreset(
        "features.7", ["features.3.0", "features.5.0", "features.7.0", "features.7"], "normgrad"
    ),
}


def _squash(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


# "ResNet-34", "resnet_34" and "resnet34" all name the same preset
_canonical = {_squash(name): name for name in _PRESETS}


def available() -> list[str]:
    """The architecture names with a preset."""
    return sorted(_PRESETS)


def layers(architecture: str) -> LayerPreset:
    """The preset for a torchvision architecture name such as ``"resnet50"``.

    Case, hyphens and underscores are ignored: ``"ResNet-50"`` works too.
    """
    key = _canonical.get(_squash(architecture), architecture)
    if key not in _PRESETS:
        close = difflib.get_close_matches(key, list(_PRESETS), n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise InvalidArgumentError(
            f"architecture: no layer preset for {architecture!r}{hint} "
            f"(available: {', '.join(available())}); pass layer names yourself"
        )
    preset = _PRESETS[key]
    return LayerPreset(preset.single, list(preset.multi), preset.source)


def _preset(preset: LayerPreset | str) -> LayerPreset:
    """``preset``, or the preset of the architecture it names."""
    chosen = layers(preset) if isinstance(preset, str) else preset
    if not isinstance(chosen, LayerPreset):
        raise ArgumentTypeError(
            f"preset: expected a LayerPreset or an architecture name, got {describe(preset)}"
        )
    return chosen


def paper_methods(model: nn.Module, preset: LayerPreset | str) -> dict[str, Explainer]:
    """The paper's ten methods on ``model``, named as its tables name them.

    NormGrad with each virtual identity layer (scaling, conv1x1, conv3x3) on the preset's
    single layer and fused over its multi layers (``"(M)"``), then Input x Gradient,
    Guided Backprop, and Grad-CAM and Guided Grad-CAM on the single layer: the methods of
    the paper's Tables 1-4, as ``evaluate`` takes them.

    Args:
        model: the classifier.
        preset: its layers (a [`LayerPreset`][normgrad.presets.LayerPreset]) or the name
            of a torchvision architecture with a preset (see [`layers`][normgrad.presets.layers]).

    Examples:
        >>> import torchvision
        >>> from normgrad import presets
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> list(presets.paper_methods(model, "resnet18"))[:3]
        ['NormGrad Scaling', 'NormGrad Scaling (M)', 'NormGrad Conv1x1']
    """
    chosen = _preset(preset)
    methods: dict[str, Explainer] = {}
    for vil, label in (("scaling", "Scaling"), ("conv1x1", "Conv1x1"), ("conv3x3", "Conv3x3")):
        methods[f"NormGrad {label}"] = NormGrad(model, chosen.single, vil)
        methods[f"NormGrad {label} (M)"] = NormGrad(model, chosen.multi, vil)
    methods["Input x Gradient"] = InputXGradient(model)
    methods["Guided Backprop"] = GuidedBackprop(model)
    methods["Grad-CAM"] = GradCAM(model, chosen.single)
    methods["Guided Grad-CAM"] = GuidedGradCAM(model, chosen.single)
    return methods


def cam_methods(model: nn.Module, preset: LayerPreset | str) -> dict[str, Explainer]:
    """The class activation maps on ``model``, each on the layer it wants: the preset's
    single layer.

    Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Eigen-CAM and Score-CAM all
    weigh the channels of one layer whose positions still map to the image: the last
    convolutional block of a CNN (``layer4`` of a ResNet, ``features.8.2`` of an
    EfficientNet, ``features.denseblock4`` of a DenseNet-121 as CheXNet), the last
    block's first norm of a ViT or a Swin (the latest layer whose patch tokens reach the
    class token; pytorch-grad-cam's advice for every CAM too). LayerCAM also gives
    usable maps on earlier, finer layers (pass one yourself). Score-CAM costs one forward
    pass per channel and image there: 512 on a ResNet-18, 2048 on a ResNet-50, 1280 on
    an EfficientNet-B0, 1024 on a DenseNet-121, 768 on a ViT-B/16, 768 on a Swin-T.

    Args:
        model: the classifier.
        preset: its layers (a [`LayerPreset`][normgrad.presets.LayerPreset]) or the name
            of a torchvision architecture with a preset (see [`layers`][normgrad.presets.layers]).

    Examples:
        >>> import torchvision
        >>> from normgrad import presets
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> cams = presets.cam_methods(model, "resnet18")
        >>> list(cams)[:4]
        ['Grad-CAM', 'Grad-CAM++', 'XGrad-CAM', 'LayerCAM']
        >>> cams["Score-CAM"]
        ScoreCAM(ResNet, layer='layer4.1', batch_size=64)
    """
    single = _preset(preset).single
    kinds: dict[str, Callable[[nn.Module, str], Explainer]] = {
        "Grad-CAM": GradCAM,
        "Grad-CAM++": GradCAMPlusPlus,
        "XGrad-CAM": XGradCAM,
        "LayerCAM": LayerCAM,
        "HiResCAM": HiResCAM,
        "Eigen-CAM": EigenCAM,
        "Score-CAM": ScoreCAM,
    }
    return {name: kind(model, single) for name, kind in kinds.items()}
