"""normgrad on third-party model zoos, with random weights (nothing is downloaded).

- MONAI ``DenseNet121``, ``SEResNet50`` and ``ResNet`` in 2-D and 3-D: NormGrad (one layer
  and several), Grad-CAM and Guided Grad-CAM run, give well-formed maps and leave the model
  as it was.
- Grad-CAM agrees with ``monai.visualize.GradCAM`` on a 3-D DenseNet121.
- timm ViT (one prefix token) and DeiT distilled (two): token layouts detected from the model,
  maps at the patch grid's resolution, equal to a hand-written reference.
- Grad-CAM agrees with pytorch-grad-cam's ``GradCAM`` on a ViT.

Inputs are kept small (the suite runs on two shared CPU cores); sizes differ per axis where
the model allows, so that a transposed or permuted map cannot pass.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import timm
import torch
from monai.networks.nets import DenseNet121, ResNet, SEResNet50
from monai.visualize import GradCAM as MonaiGradCAM
from monai.visualize.class_activation_maps import default_normalizer
from monai.visualize.visualizer import default_upsampler
from pytorch_grad_cam import GradCAM as PgcGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import normgrad

from .lifecycle import assert_unchanged, snapshot
from .models import seeded
from .reference.maps import reference_saliency
from .reference.tokens import reference_token_maps


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread while this module runs (restored after it), and the cached models
    freed: on a shared two-core machine two OpenMP threads made the many small ops of these
    models 10 to 60 times slower (a 50 x 192 by 192 x 768 matmul: 0.4 ms on one thread,
    24 ms on two), each op waiting at a barrier for a core another process holds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _model.cache_clear()
        _vit.cache_clear()


def _build(factory: Callable[[], nn.Module], dtype: torch.dtype) -> nn.Module:
    """``factory()`` re-initialised by :func:`seeded` (BatchNorm statistics included), in
    ``dtype`` and left in training mode (the explainers must restore it). The global RNG,
    used by the libraries' own initialisation, is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = factory()
    return seeded(model).to(dtype).train()


def _x(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _assert_saliency(saliency: torch.Tensor, batch: int, size: tuple[int, ...]) -> None:
    """Shape ``(N, 1, *size)``, finite, in ``[0, 1]`` and not constant for any sample."""
    assert saliency.shape == (batch, 1, *size)
    assert bool(torch.isfinite(saliency).all())
    assert saliency.min() >= 0 and saliency.max() <= 1
    flat = saliency.flatten(1)
    spread = flat.amax(dim=1) - flat.amin(dim=1)
    assert bool((spread > 0.1).all()), f"a map is (nearly) constant: spread {spread.tolist()}"


# --------------------------------------------------------------------------------------
# MONAI CNNs in 2-D and 3-D
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A MONAI model, its input size and dtype, and the layers explained, each with the
    spatial size of its output for that input."""

    factory: Callable[[], nn.Module]
    size: tuple[int, ...]
    dtype: torch.dtype
    single: str
    multi: tuple[str, ...]
    cam: str
    grids: dict[str, tuple[int, ...]]
    target: tuple[int, int] = (2, 0)


def _resnet(dims: int) -> Callable[[], nn.Module]:
    return lambda: ResNet(
        block="basic",
        layers=[1, 1, 1, 1],
        block_inplanes=[8, 16, 32, 64],
        spatial_dims=dims,
        n_input_channels=1,
        num_classes=3,
    )


CASES: dict[str, Case] = {
    # DenseNet121: 7x7 stride-2 stem, max pool, three average-pool transitions (1/32).
    # At these sizes (the smallest it takes: 29 per side) the last dense block and
    # class_layers.relu are 1 x 1 (a constant map): earlier blocks are explained.
    "densenet121-2d": Case(
        lambda: DenseNet121(spatial_dims=2, in_channels=1, out_channels=3),
        (32, 48),
        torch.float32,
        single="features.denseblock2",
        multi=("features.denseblock1", "features.transition2", "features.denseblock3"),
        cam="features.transition2",
        grids={
            "features.denseblock1": (8, 12),
            "features.denseblock2": (4, 6),
            "features.transition2": (2, 3),
            "features.denseblock3": (2, 3),
        },
    ),
    "densenet121-3d": Case(
        lambda: DenseNet121(spatial_dims=3, in_channels=1, out_channels=3),
        (32, 32, 32),
        torch.float32,
        single="features.denseblock2",
        multi=("features.denseblock1", "features.transition2", "features.denseblock3"),
        cam="features.denseblock3",
        grids={
            "features.denseblock1": (8, 8, 8),
            "features.denseblock2": (4, 4, 4),
            "features.transition2": (2, 2, 2),
            "features.denseblock3": (2, 2, 2),
        },
    ),
    # SEResNet50: stem and max pool (1/4), then layer2..layer4 halve (1/32).
    "seresnet50-2d": Case(
        lambda: SEResNet50(spatial_dims=2, in_channels=1, num_classes=3),
        (64, 64),
        torch.float32,
        single="layer3",
        multi=("layer2.3", "layer3.5", "layer4"),
        cam="layer3.5",
        grids={"layer2.3": (8, 8), "layer3": (4, 4), "layer3.5": (4, 4), "layer4": (2, 2)},
    ),
    "seresnet50-3d": Case(
        lambda: SEResNet50(spatial_dims=3, in_channels=1, num_classes=3),
        (32, 32, 32),
        torch.float32,
        single="layer2",
        multi=("layer1.2", "layer3"),
        cam="layer3.5",
        grids={
            "layer1.2": (8, 8, 8),
            "layer2": (4, 4, 4),
            "layer3": (2, 2, 2),
            "layer3.5": (2, 2, 2),
        },
    ),
    # A small MONAI ResNet (stride-1 stem, max pool, layer2..layer4 halve: 1/16), float64.
    "resnet-2d": Case(
        _resnet(2),
        (48, 64),
        torch.float64,
        single="layer3",
        multi=("layer1", "layer2.0", "layer4"),
        cam="layer4",
        grids={"layer1": (24, 32), "layer2.0": (12, 16), "layer3": (6, 8), "layer4": (3, 4)},
    ),
    "resnet-3d": Case(
        _resnet(3),
        (16, 24, 32),
        torch.float64,
        single="layer2",
        multi=("layer1.0", "layer3"),
        cam="layer3",
        grids={"layer1.0": (8, 12, 16), "layer2": (4, 6, 8), "layer3": (2, 3, 4)},
        target=(1, 0),  # for class 2, sample 1's Grad-CAM is negative everywhere (zero)
    ),
}


@functools.cache
def _model(case: str) -> nn.Module:
    return _build(CASES[case].factory, CASES[case].dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_monai_cnn(case: str) -> None:
    c = CASES[case]
    model = _model(case)
    x = _x((2, 1, *c.size), c.dtype)
    target = torch.tensor(c.target)
    before = snapshot(model, x)

    single = normgrad.NormGrad(model, c.single, "conv3x3").explain(x, target)
    _assert_saliency(single.saliency, 2, c.size)
    assert single.raw is not None and single.raw.shape == (2, 1, *c.size)
    assert single.raw_layer_maps[c.single].shape == (2, 1, *c.grids[c.single])
    assert single.saliency.dtype == c.dtype
    assert torch.equal(single.classes, target)

    multi = normgrad.NormGrad(model, list(c.multi), "conv1x1").explain(x, target)
    _assert_saliency(multi.saliency, 2, c.size)
    assert list(multi.raw_layer_maps) == list(c.multi)
    for name in c.multi:
        assert multi.raw_layer_maps[name].shape == (2, 1, *c.grids[name]), name
        assert multi.layer_maps[name].shape == (2, 1, *c.size), name

    cam = normgrad.GradCAM(model, c.cam).explain(x, target)
    _assert_saliency(cam.saliency, 2, c.size)
    assert cam.raw_layer_maps[c.cam].shape == (2, 1, *c.grids[c.cam])
    assert cam.raw_layer_maps[c.cam].min() >= 0  # after the ReLU

    guided = normgrad.GuidedGradCAM(model, c.cam).explain(x, target)
    _assert_saliency(guided.saliency, 2, c.size)
    assert guided.attribution is not None and guided.attribution.shape == (2, 1, *c.size)
    # its Grad-CAM factor is the Grad-CAM above
    torch.testing.assert_close(guided.raw_layer_maps[c.cam], cam.raw_layer_maps[c.cam])

    assert_unchanged(before, snapshot(model, x))


# --------------------------------------------------------------------------------------
# Grad-CAM against monai.visualize.GradCAM (3-D)
# --------------------------------------------------------------------------------------


def test_grad_cam_matches_monai_3d() -> None:
    """normgrad's Grad-CAM of a 3-D DenseNet121 equals MONAI's, at the layer's resolution,
    upsampled and normalised.

    MONAI computes ReLU(sum_k mean(g_k) A_k) at ``target_layers`` too, and upsamples with
    ``default_upsampler`` (trilinear, ``align_corners=False``), as normgrad does; its default
    postprocessing ``default_normalizer`` maps (min, max) to (1, 0), an INVERTED min-max, so
    its result is inverted back (1 - m) here. What is left is float32 rounding: MONAI
    differentiates ``score.sum()`` with ``backward`` through a module backward hook (weight
    gradients too), normgrad with ``autograd.grad`` from the captured activation; both
    normalisers divide by max - min.

    The input is anisotropic (32, 32, 40) so that a permuted axis would show. The layer is
    ``features.denseblock2`` (4, 4, 5): at this size (DenseNet121 takes no less than 29 per
    side) the last dense block and ``class_layers.relu`` are 1 x 1 x 1, whose Grad-CAM map is
    constant. MONAI is given one int class for the batch: with ``class_idx=None`` and a
    batch of two, its ``logits[:, class_idx]`` selects both predicted classes for both
    samples and differentiates their sum.
    """
    model = _model("densenet121-3d")
    layer = "features.denseblock2"
    x = _x((2, 1, 32, 32, 40), torch.float32, seed=1)
    before = snapshot(model, x)
    ours = normgrad.GradCAM(model, layer).explain(x, target=1)
    assert_unchanged(before, snapshot(model, x))

    # One MONAI pass; its upsampler and postprocessing record what they are given.
    seen: dict[str, torch.Tensor] = {}

    def upsampler(size: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
        up = default_upsampler(size)

        def record(m: torch.Tensor) -> torch.Tensor:
            seen["at_layer"] = m.detach().clone()
            return up(m)

        return record

    def postprocessing(m: torch.Tensor) -> torch.Tensor:
        seen["upsampled"] = m.detach().clone()
        return default_normalizer(m)

    # MONAI leaves its hooks on the model and writes param.grad: give it a copy.
    monai_cam = MonaiGradCAM(
        copy.deepcopy(model), layer, upsampler=upsampler, postprocessing=postprocessing
    )
    inverted = monai_cam(x, class_idx=1)

    assert ours.raw_layer_maps[layer].shape == seen["at_layer"].shape == (2, 1, 4, 4, 5)
    assert ours.raw is not None and ours.raw.shape == seen["upsampled"].shape == (2, 1, 32, 32, 40)
    scale = float(seen["at_layer"].abs().max())
    assert scale > 0
    tol = {"rtol": 1e-5, "atol": 1e-6 * scale}
    torch.testing.assert_close(ours.raw_layer_maps[layer], seen["at_layer"], **tol)
    torch.testing.assert_close(ours.raw, seen["upsampled"], **tol)
    # Inverted back: both divide by max - min (normgrad without an eps, so a map spans
    # [0, 1] whatever its units); what is left is the rounding of 1 - (1 - m).
    torch.testing.assert_close(ours.saliency, 1 - inverted, rtol=1e-6, atol=3e-7)
    _assert_saliency(ours.saliency, 2, (32, 32, 40))


# --------------------------------------------------------------------------------------
# timm vision transformers: token layouts with one and two prefix tokens
# --------------------------------------------------------------------------------------

VIT_SIZE = (32, 48)  # patch 8: a 4 x 6 grid
VIT_GRID = (4, 6)
VITS = {
    "vit": ("vit_tiny_patch16_224", 1),
    "deit-distilled": ("deit_tiny_distilled_patch16_224", 2),
}


@functools.cache
def _vit(arch: str, dtype: torch.dtype = torch.float64) -> nn.Module:
    name, prefix = VITS[arch]
    model = _build(
        lambda: timm.create_model(
            name, pretrained=False, img_size=VIT_SIZE, patch_size=8, num_classes=3
        ),
        dtype,
    )
    assert model.num_prefix_tokens == prefix
    return model


@pytest.mark.parametrize("arch", list(VITS))
def test_timm_vit_token_layout_detected(arch: str) -> None:
    model = _vit(arch)
    prefix = VITS[arch][1]
    x = _x((2, 3, *VIT_SIZE), torch.float64, seed=2)
    target = torch.tensor([1, 2])
    layers = ["blocks.10", "blocks.11.norm1"]
    before = snapshot(model, x)

    expected = reference_token_maps(model, x, layers, target, prefix, VIT_GRID)
    for layer, reference in zip(layers, expected):
        result = normgrad.NormGrad(model, layer, "conv3x3").explain(x, target)
        assert result.raw_layer_maps[layer].shape == (2, 1, *VIT_GRID)
        torch.testing.assert_close(result.raw_layer_maps[layer], reference, rtol=1e-10, atol=1e-12)
        _assert_saliency(result.saliency, 2, VIT_SIZE)
        # the layout stated gives the same maps as the layout detected
        stated = normgrad.NormGrad(
            model, layer, "conv3x3", layout=normgrad.Tokens(prefix=prefix, grid=VIT_GRID)
        ).explain(x, target)
        assert torch.equal(stated.saliency, result.saliency)

    fused = normgrad.NormGrad(model, layers, "conv3x3")(x, target)
    _assert_saliency(fused, 2, VIT_SIZE)
    # compared squared: the square root of the geometric mean turns rounding near zero
    # (1e-16) into differences up to 1e-8
    reference = reference_saliency(expected, VIT_SIZE)
    torch.testing.assert_close(fused**2, reference**2, rtol=1e-10, atol=1e-14)

    # The classifier reads only the prefix tokens after the last block (a per-token norm,
    # then the class / distillation tokens): the patch grid gets no gradient there, its map
    # is constant (zero) and so is the saliency.
    last = normgrad.NormGrad(model, "blocks.11", "conv3x3").explain(x, target)
    assert last.raw_layer_maps["blocks.11"].shape == (2, 1, *VIT_GRID)
    assert not bool(last.saliency.any())

    assert_unchanged(before, snapshot(model, x))


# --------------------------------------------------------------------------------------
# Grad-CAM against pytorch-grad-cam on a ViT (2-D)
# --------------------------------------------------------------------------------------


def test_grad_cam_matches_pytorch_grad_cam_vit() -> None:
    """normgrad's Grad-CAM of a ViT's last ``norm1`` equals pytorch-grad-cam's.

    pytorch-grad-cam is told the token layout by ``reshape_transform`` (drop the class
    token, read the rest as the (4, 6) grid); normgrad detects it. Conventions differ only
    in the order of the steps after ReLU(sum_k mean(g_k) A_k): pytorch-grad-cam min-max
    normalises at the layer's resolution (eps 1e-7), resizes with ``cv2.resize``
    (INTER_LINEAR, half-pixel centres: for upsampling the same weights as torch's bilinear
    ``align_corners=False``) and min-max normalises again; normgrad upsamples, then
    normalises once (eps 1e-8). Bilinear weights sum to one, so normalising before the
    resize changes nothing but rounding and the eps. Its result is float32 numpy at the
    input's size. Both the map at the layer's resolution (from the activations and
    gradients pytorch-grad-cam captured) and the final maps are compared.
    """
    model = _vit("vit", torch.float32)
    layer = "blocks.11.norm1"
    x = _x((2, 3, *VIT_SIZE), torch.float32, seed=3)
    target = [2, 0]
    before = snapshot(model, x)
    ours = normgrad.GradCAM(model, layer).explain(x, torch.tensor(target))
    assert_unchanged(before, snapshot(model, x))

    def reshape_transform(tokens: torch.Tensor) -> torch.Tensor:
        n, _, c = tokens.shape
        return tokens[:, 1:].reshape(n, *VIT_GRID, c).permute(0, 3, 1, 2)

    # pytorch-grad-cam writes param.grad (model.zero_grad(), backward): give it a copy.
    theirs_model = copy.deepcopy(model)
    with PgcGradCAM(
        model=theirs_model,
        target_layers=[theirs_model.blocks[-1].norm1],
        reshape_transform=reshape_transform,
    ) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
        (activation,) = cam.activations_and_grads.activations
        (gradient,) = cam.activations_and_grads.gradients
        at_layer = (gradient.mean(dim=(2, 3), keepdim=True) * activation).sum(1, keepdim=True)
    assert not any(m._forward_hooks for m in theirs_model.modules())  # released

    assert activation.shape == (2, 192, *VIT_GRID)
    # the same map at the layer's resolution (bit-identical here)
    scale = float(at_layer.abs().max())
    torch.testing.assert_close(
        ours.raw_layer_maps[layer], at_layer.clamp_min(0), rtol=1e-6, atol=1e-6 * scale
    )
    assert isinstance(theirs, np.ndarray) and theirs.dtype == np.float32
    assert theirs.shape == (2, *VIT_SIZE)
    _assert_saliency(ours.saliency, 2, VIT_SIZE)
    # Each is within 5e-7 (4 float32 ulps of 1) of the same pipeline run in float64 on the
    # layer's map; the eps differ by ~4e-7 here (1e-8 of a raw range of ~0.03).
    torch.testing.assert_close(ours.saliency[:, 0], torch.from_numpy(theirs), rtol=1e-6, atol=1e-6)
