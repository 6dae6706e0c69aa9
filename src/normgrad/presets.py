"""The layers the paper uses, by architecture (torchvision module names).

Example:
    >>> from normgrad import presets
    >>> presets.layers("resnet50").single
    'layer4.2'
    >>> presets.layers("resnet50").multi
    ['layer2.0', 'layer3.0', 'layer4.0', 'layer4.2']
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ._errors import InvalidArgumentError

__all__ = ["LayerPreset", "available", "layers"]


@dataclass(frozen=True)
class LayerPreset:
    """Layers for one architecture.

    Attributes:
        single: the last convolutional block: single-layer NormGrad and Grad-CAM.
        multi: the layers fused by multi-layer NormGrad ("M" in the paper's tables).
        source: where the choice comes from.
    """

    single: str
    multi: list[str] = field(default_factory=list)
    source: str = "paper"


def _resnet(last: str, source: str = "paper") -> LayerPreset:
    return LayerPreset(last, ["layer2.0", "layer3.0", "layer4.0", last], source)


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
