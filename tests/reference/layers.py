"""Literal references of NormGrad for whole models: the layers' outputs read from the
model's forward written out by hand (no hooks), their gradients of the target's score,
then the per-layer definitions and the fusion of ``maps``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as tf
from torch import nn

from ..models import TinyCNN
from .maps import reference_normgrad_map, reference_saliency

Intermediates = Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]


def tiny_intermediates(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    assert isinstance(model, TinyCNN)
    return model.features(x)


def resnet_intermediates(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchvision ResNet's forward written out, keeping every block's output."""
    out: dict[str, torch.Tensor] = {}
    h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, stage)):
            h = block(h)
            out[f"{stage}.{i}"] = h
    out["fc"] = model.fc(torch.flatten(model.avgpool(h), 1))
    return out


def efficientnet_intermediates(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchvision EfficientNet's forward written out, keeping every ``features.i.j``."""
    out: dict[str, torch.Tensor] = {}
    h = x
    for i, stage in enumerate(model.features):
        for j, block in enumerate(stage):
            h = block(h)
            out[f"features.{i}.{j}"] = h
    out["fc"] = model.classifier(torch.flatten(model.avgpool(h), 1))
    return out


def reference_model_normgrad(
    model: nn.Module,
    intermediates: Intermediates,
    x: torch.Tensor,
    layers: list[str],
    vil: str,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """NormGrad from the definitions, with an explicit unfold, in float64 after the model:
    the layers' outputs read from ``intermediates`` (the model's forward written out),
    their gradients of the target logits' sum (the predicted class without ``target``),
    fused by ``maps.reference_saliency`` at the input's size ``(N, 1, H, W)``."""
    model.eval()
    with torch.enable_grad():
        out = intermediates(model, x)
        logits = out["fc"]
        classes = logits.argmax(1) if target is None else target
        score = logits.gather(1, classes[:, None]).sum()
        grads = torch.autograd.grad(score, [out[name] for name in layers])
    raw = []
    for name, g in zip(layers, grads):
        a = out[name].detach().double()
        g = g.double()
        n, c, h, w = a.shape
        if vil == "scaling":
            raw.append((g * a).norm(dim=1, keepdim=True))
            continue
        k = int(vil[4:].split("x")[0])
        patches = tf.unfold(a, kernel_size=k, padding=k // 2).view(n, c * k * k, h, w)
        raw.append(g.norm(dim=1, keepdim=True) * patches.norm(dim=1, keepdim=True))
    return reference_saliency(raw, tuple(x.shape[2:]))


def reference_features_normgrad(
    model: nn.Module, x: torch.Tensor, layers: list[str], kind: str, k: int, target: torch.Tensor
) -> torch.Tensor:
    """NormGrad of a model whose ``features(x)`` returns its layers' outputs by name (and
    ``"fc"``, the logits): each layer's map by the per-location ``reference_normgrad_map``
    (``kind``, kernel ``k``), fused at the input's size."""
    with torch.enable_grad():
        out = model.eval().features(x)
        score = out["fc"].gather(1, target[:, None]).sum()
        grads = torch.autograd.grad(score, [out[n] for n in layers])
    raw = [reference_normgrad_map(out[n].detach(), g, kind, k) for n, g in zip(layers, grads)]
    return reference_saliency(raw, tuple(x.shape[2:]))
