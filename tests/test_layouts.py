"""Channels-last and token layer outputs (Swin, ConvNeXt, ViT, DeiT): read as (N, C, *spatial).

Every expected map here is made from each layer's output and the target logit's gradient
taken by hand (a forward hook of the test's own and ``torch.autograd.grad``), converted to
``(N, C, H, W)`` by hand (prefix tokens dropped, patch tokens laid out row-major,
channels-last permuted) and passed through the literal per-location references of
``tests/reference.py``. Models are tiny and float64, so the comparisons are near exact.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import timm
import torch
import torch.nn.functional as tf
from timm.models.deit import VisionTransformerDistilled
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

import normgrad
from normgrad import metrics, sanity

from .lifecycle import assert_unchanged, snapshot
from .models import seeded
from .reference.maps import (
    reference_grad_cam,
    reference_normalize,
    reference_normgrad_map,
    reference_saliency,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The models are tiny: one intra-op thread is fastest, and on a shared, busy machine
    two threads waiting on each other make every pass 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


VILS = {"scaling": ("scaling", 1), "conv1x1": ("conv", 1), "conv3x3": ("conv", 3)}


def close_raw(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Raw maps (any magnitude), float64 throughout: equal up to rounding."""
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-13)


def close_maps(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Maps in [0, 1]."""
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------
# Tiny models (float32 builders; the reference tests convert them to float64)
# ---------------------------------------------------------------------------------------


def tv_vit() -> nn.Module:
    """torchvision ViT, 32x32 input, 8x8 patches: 1 class token + a 4x4 grid."""
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=3,
    )
    assert not model.heads.head.weight.any()  # torchvision starts the head at zero
    seeded(model, 1)  # re-initialises every parameter, the head included
    assert model.heads.head.weight.abs().min() > 0
    return model


def swin(embed_dim: int = 16) -> nn.Module:
    """torchvision Swin, two stages: features.0/1 at stride 4, features.2/3 and norm at 8."""
    torch.manual_seed(0)
    model = SwinTransformer(
        patch_size=[4, 4],
        embed_dim=embed_dim,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[2, 2],
        num_classes=3,
    )
    return seeded(model, 2)


def timm_vit(reg_tokens: int = 0) -> nn.Module:
    """timm ViT on a non-square 32x48 input, 8x8 patches: a 4x6 grid."""
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=(32, 48),
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=3,
        reg_tokens=reg_tokens,
    )
    return seeded(model, 3)


def deit_distilled() -> nn.Module:
    """timm DeiT with a class and a distillation token (2 prefix tokens), 32x48 input."""
    torch.manual_seed(0)
    model = VisionTransformerDistilled(
        img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3
    )
    assert model.num_prefix_tokens == 2
    return seeded(model, 4)


def convnext_tiny() -> nn.Module:
    torch.manual_seed(0)
    return seeded(ConvNeXt([CNBlockConfig(24, 48, 1), CNBlockConfig(48, None, 1)], num_classes=3))


def convnext_square() -> nn.Module:
    """ConvNeXt with 8 channels at 8x8 on a 32x32 input: every (N, 8, 8, 8) output reads
    both ways, so the module kinds (Conv2d, Permute, LayerNorm, Linear) must settle it."""
    torch.manual_seed(0)
    return seeded(ConvNeXt([CNBlockConfig(8, None, 2)], num_classes=3), 5)


class AmbiguousNet(nn.Module):
    """A model with a LayerNorm over channels last whose ``act`` (a GELU: says nothing about
    layout) outputs (N, 8, 8, 8) on an 8x8 input; with ``einsum``, its input is made by an
    ``einsum`` (not followed), so nothing shows its layout."""

    def __init__(self, einsum: bool = False) -> None:
        super().__init__()
        self.einsum = einsum
        self.conv = nn.Conv2d(3, 8, 1)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = self.act(torch.einsum("nchw->nchw", h) if self.einsum else h)
        h = self.norm(h.permute(0, 2, 3, 1))
        return self.head(h.mean(dim=(1, 2)))


class TokenNet(nn.Module):
    """Tokens with no model hint: a 2x2-patch embedding of a 32x32 input (256 tokens) of
    which the first ``tokens`` are kept, through ``act`` (N, tokens, 8)."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.embed = nn.Conv2d(3, 8, 2, stride=2)
        self.act = nn.GELU()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)[:, : self.tokens]
        return self.head(self.act(t).mean(dim=1))


class PlainCNN(nn.Module):
    """A plain CNN whose ``relu`` outputs (N, 16, 16, 16) on a 16x16 input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class FirstOut(nn.Module):
    """Wraps a channels-last module and hands its output on channels first."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).permute(0, 3, 1, 2)


class BackToLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------
# By-hand capture and layout conversion (no normgrad code involved)
# ---------------------------------------------------------------------------------------

Convert = Callable[[torch.Tensor], torch.Tensor]


def first(t: torch.Tensor) -> torch.Tensor:
    assert t.ndim == 4
    return t


def last(t: torch.Tensor) -> torch.Tensor:
    assert t.ndim == 4
    return t.permute(0, 3, 1, 2)


def tokens(prefix: int, grid: tuple[int, int]) -> Convert:
    def convert(t: torch.Tensor) -> torch.Tensor:
        n, count, c = t.shape
        assert count == prefix + grid[0] * grid[1], (count, prefix, grid)
        return t[:, prefix:].reshape(n, grid[0], grid[1], c).permute(0, 3, 1, 2)

    return convert


def by_hand(
    model: nn.Module, x: torch.Tensor, names: list[str], target: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's output and the gradient of the target logits' sum, in its own layout."""
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        modules[n].register_forward_hook(lambda m, a, o, n=n: outputs.__setitem__(n, o))
        for n in names
    ]
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x)
            score = logits.gather(1, target[:, None]).sum()
            grads = torch.autograd.grad(score, [outputs[n] for n in names])
    finally:
        for h in handles:
            h.remove()
    return {n: (outputs[n].detach(), g) for n, g in zip(names, grads)}


def converted(
    model: nn.Module, x: torch.Tensor, layers: dict[str, Convert], target: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    raw = by_hand(model, x, list(layers), target)
    return {n: (layers[n](a), layers[n](g)) for n, (a, g) in raw.items()}


def grad_cam_saliency(cam: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return reference_normalize(tf.interpolate(cam, size=size, mode="bilinear", align_corners=False))


# ---------------------------------------------------------------------------------------
# 1. NormGrad against the literal reference
# ---------------------------------------------------------------------------------------


@dataclass
class Case:
    build: Callable[[], nn.Module]
    size: tuple[int, int]
    target: list[int]
    layers: dict[str, Convert]
    fused: list[str]


CASES = {
    "tv-vit": Case(
        tv_vit,
        (32, 32),
        [0, 2, 1],
        {
            "conv_proj": first,
            "encoder.dropout": tokens(1, (4, 4)),
            "encoder.layers.encoder_layer_0": tokens(1, (4, 4)),
            "encoder.layers.encoder_layer_1.ln_1": tokens(1, (4, 4)),
        },
        ["conv_proj", "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1.ln_1"],
    ),
    "swin-32x48": Case(
        swin,
        (32, 48),
        [2, 0],
        {
            "features.0": last,
            "features.1": last,
            "features.2.norm": last,
            "features.3": last,
            "norm": last,
        },
        ["features.1", "features.3", "norm"],
    ),
    "timm-vit-32x48": Case(
        timm_vit,
        (32, 48),
        [1, 2],
        {
            "patch_embed.proj": first,
            "blocks.0": tokens(1, (4, 6)),
            "blocks.1.norm1": tokens(1, (4, 6)),
        },
        ["blocks.0", "blocks.1.norm1"],
    ),
    "timm-vit-3-prefix": Case(
        lambda: timm_vit(reg_tokens=2),
        (32, 48),
        [0, 1],
        {"blocks.0": tokens(3, (4, 6)), "blocks.1.norm1": tokens(3, (4, 6))},
        ["blocks.0", "blocks.1.norm1"],
    ),
    "deit-distilled": Case(
        deit_distilled,
        (32, 48),
        [2, 1],
        {"blocks.0": tokens(2, (4, 6)), "blocks.1.norm1": tokens(2, (4, 6))},
        ["blocks.0", "blocks.1.norm1"],
    ),
    "convnext-8x8x8": Case(
        convnext_square,
        (32, 32),
        [1, 0],
        {
            "features.0": first,
            "features.1.0.block.1": last,
            "features.1.0.block.2": last,
            "features.1.0.block.5": last,
            "features.1.0": first,
        },
        ["features.0", "features.1.0.block.2", "features.1.0"],
    ),
}

_BUILT: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]] = {}


def built(case_id: str) -> tuple[Case, nn.Module, torch.Tensor, torch.Tensor]:
    """The case's model in float64, an input batch and the targets (built once)."""
    case = CASES[case_id]
    if case_id not in _BUILT:
        model = case.build().double().eval()
        gen = torch.Generator().manual_seed(7)
        x = torch.randn(len(case.target), 3, *case.size, generator=gen, dtype=torch.float64)
        _BUILT[case_id] = (model, x, torch.tensor(case.target))
    return (case, *_BUILT[case_id])


def test_the_tiny_models_have_the_layer_shapes_the_cases_assume() -> None:
    """The raw layouts are what they are said to be (so the cases test what they claim)."""
    case, model, x, target = built("swin-32x48")
    shapes = {
        n: tuple(a.shape) for n, (a, _) in by_hand(model, x, list(case.layers), target).items()
    }
    assert shapes["features.0"] == (2, 8, 12, 16)
    assert shapes["norm"] == (2, 4, 6, 32)
    case, model, x, target = built("tv-vit")
    ((a, g),) = by_hand(model, x, ["encoder.layers.encoder_layer_0"], target).values()
    assert a.shape == (3, 17, 32) and bool(g[:, 1:].abs().amax(dim=(1, 2)).gt(0).all())
    case, model, x, target = built("timm-vit-3-prefix")
    ((a, _),) = by_hand(model, x, ["blocks.0"], target).values()
    assert a.shape == (2, 27, 32)
    case, model, x, target = built("convnext-8x8x8")
    shapes = {
        n: tuple(a.shape) for n, (a, _) in by_hand(model, x, list(case.layers), target).items()
    }
    assert set(shapes.values()) == {(2, 8, 8, 8)}  # every one reads both ways


@pytest.mark.parametrize("vil", list(VILS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_normgrad_single_layers_equal_the_literal_reference(case_id: str, vil: str) -> None:
    case, model, x, target = built(case_id)
    expected = converted(model, x, case.layers, target)
    kind, k = VILS[vil]
    for name, (a, g) in expected.items():
        result = normgrad.NormGrad(model, name, vil).explain(x, target)
        raw = reference_normgrad_map(a, g, kind, k)
        assert raw.amax() > 0
        close_raw(result.raw_layer_maps[name], raw)
        close_maps(result.saliency, reference_saliency([raw], case.size))
        assert torch.equal(result.classes, target)


@pytest.mark.parametrize("vil", list(VILS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_normgrad_fused_layers_equal_the_literal_reference(case_id: str, vil: str) -> None:
    case, model, x, target = built(case_id)
    captured = converted(model, x, {n: case.layers[n] for n in case.fused}, target)
    kind, k = VILS[vil]
    result = normgrad.NormGrad(model, case.fused, vil).explain(x, target)
    raws = [reference_normgrad_map(a, g, kind, k) for a, g in captured.values()]
    assert list(result.raw_layer_maps) == case.fused
    for name, raw in zip(case.fused, raws):
        close_raw(result.raw_layer_maps[name], raw)
    expected = reference_saliency(raws, case.size)
    # The J-th root turns rounding of a product near 0 (1e-17) into up to ~1e-5 (J = 3):
    # compare the products tightly and the roots to that bound.
    fused = len(case.fused)
    close_maps(result.saliency**fused, expected**fused)
    torch.testing.assert_close(result.saliency, expected, rtol=1e-10, atol=1e-5)


def test_stated_layouts_give_the_detected_maps() -> None:
    """Stating what detection found (one for all layers, a dict, names and aliases) changes
    nothing."""
    _, model, x, target = built("swin-32x48")
    layers = ["features.0", "norm"]
    auto = normgrad.NormGrad(model, layers, "conv3x3").explain(x, target)
    for layout in ("nhwc", "channels_last", {"norm": "NHWC"}, {"features.0": "auto"}):
        stated = normgrad.NormGrad(model, layers, "conv3x3", layout=layout).explain(x, target)
        assert torch.equal(stated.saliency, auto.saliency), layout
    cam = normgrad.GradCAM(model, "norm").explain(x, target)
    for layout in ("nhwc", {"norm": "channels_last"}):
        stated = normgrad.GradCAM(model, "norm", layout=layout).explain(x, target)
        assert torch.equal(stated.saliency, cam.saliency), layout
    _, model, x, target = built("deit-distilled")
    auto = normgrad.NormGrad(model, "blocks.0", "conv1x1").explain(x, target)
    for token_layout in ("tokens", normgrad.Tokens(prefix=2), normgrad.Tokens(grid=(4, 6))):
        explainer = normgrad.NormGrad(model, "blocks.0", "conv1x1", layout=token_layout)
        assert torch.equal(explainer.explain(x, target).saliency, auto.saliency), token_layout


# ---------------------------------------------------------------------------------------
# 2. Grad-CAM (and Guided Grad-CAM) against the literal reference
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", ["tv-vit", "swin-32x48", "timm-vit-3-prefix", "convnext-8x8x8"])
def test_grad_cam_equals_the_literal_grad_cam(case_id: str) -> None:
    case, model, x, target = built(case_id)
    for name, (a, g) in converted(model, x, case.layers, target).items():
        result = normgrad.GradCAM(model, name).explain(x, target)
        cam = reference_grad_cam(a, g)
        close_raw(result.raw_layer_maps[name], cam)
        up = tf.interpolate(cam, size=case.size, mode="bilinear", align_corners=False)
        assert result.raw is not None
        close_raw(result.raw, up)
        close_maps(result.saliency, grad_cam_saliency(cam, case.size))


@pytest.mark.parametrize(
    ("case_id", "name"),
    [("tv-vit", "encoder.layers.encoder_layer_0"), ("swin-32x48", "features.1")],
)
def test_guided_grad_cam_on_tokens_and_channels_last(case_id: str, name: str) -> None:
    """These models have no ReLU (GELU): the guided gradient is the plain input gradient."""
    case, model, x, target = built(case_id)
    ((a, g),) = converted(model, x, {name: case.layers[name]}, target).values()
    xg = x.clone().requires_grad_()
    with torch.enable_grad():
        (input_grad,) = torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), xg)
    cam = tf.interpolate(reference_grad_cam(a, g), case.size, mode="bilinear", align_corners=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no ReLU ran"
        result = normgrad.GuidedGradCAM(model, name).explain(x, target)
    assert result.attribution is not None
    close_raw(result.attribution, input_grad * cam)
    close_raw(result.raw_layer_maps[name], reference_grad_cam(a, g))


# ---------------------------------------------------------------------------------------
# 3. A channels-last layer equals the same layer handed on channels first
# ---------------------------------------------------------------------------------------


def test_channels_last_swin_layers_equal_their_channels_first_wrapping() -> None:
    _, model, x, target = built("swin-32x48")
    wrapped = copy.deepcopy(model)
    wrapped.features[1] = nn.Sequential(FirstOut(wrapped.features[1]), BackToLast())
    wrapped.norm = nn.Sequential(FirstOut(wrapped.norm), BackToLast())
    with torch.no_grad():
        assert torch.equal(wrapped(x), model(x))
    pairs = {"features.1": "features.1.0", "norm": "norm.0"}
    for vil in VILS:
        for layout in (None, "channels_first"):
            ours = normgrad.NormGrad(model, list(pairs), vil).explain(x, target)
            theirs = normgrad.NormGrad(wrapped, list(pairs.values()), vil, layout=layout)
            other = theirs.explain(x, target)
            for name, wrapped_name in pairs.items():
                close_raw(ours.raw_layer_maps[name], other.raw_layer_maps[wrapped_name])
            close_maps(ours.saliency, other.saliency)
    for name, wrapped_name in pairs.items():
        ours = normgrad.GradCAM(model, name).explain(x, target)
        other = normgrad.GradCAM(wrapped, wrapped_name).explain(x, target)
        torch.testing.assert_close(ours.raw_layer_maps[name], other.raw_layer_maps[wrapped_name])
        close_maps(ours.saliency, other.saliency)


# ---------------------------------------------------------------------------------------
# 4. Ambiguous or inconsistent layouts raise; a plain CNN is read channels first
# ---------------------------------------------------------------------------------------

ENC0 = "encoder.layers.encoder_layer_0"


def _x(*size: int) -> torch.Tensor:
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))


LAYOUT_ERRORS: dict[str, tuple[Callable[[], normgrad.Explainer], torch.Tensor, list[str]]] = {
    # a big Swin's norm: (N, 7, 7, 768) for 224x224; here (N, 4, 4, 32) for 32x32
    "swin-norm-stated-nchw": (
        lambda: normgrad.NormGrad(swin(), "norm", "scaling", layout="nchw"),
        _x(32, 32),
        ["'norm'", "(2, 4, 4, 32)", "channels_first", "read as channels_last it does"],
    ),
    "swin-norm-stated-nchw-gradcam": (
        lambda: normgrad.GradCAM(swin(), "norm", layout="channels_first"),
        _x(32, 32),
        ["'norm'", "read as channels_last it does"],
    ),
    "swin-norm-stated-tokens": (
        lambda: normgrad.NormGrad(swin(), "norm", "scaling", layout="tokens"),
        _x(32, 32),
        ["'norm'", "tokens"],
    ),
    "convnext-layernorm-stated-nchw": (
        lambda: normgrad.NormGrad(
            convnext_tiny(), "features.1.0.block.2", layout={"features.1.0.block.2": "nchw"}
        ),
        _x(32, 32),
        ["'features.1.0.block.2'", "read as channels_last it does"],
    ),
    "vit-tokens-stated-nchw": (
        lambda: normgrad.NormGrad(tv_vit(), ENC0, "scaling", layout="nchw"),
        _x(32, 32),
        [repr(ENC0), "(2, 17, 32)"],
    ),
    "vit-stated-prefix-does-not-fit": (
        lambda: normgrad.NormGrad(tv_vit(), ENC0, "scaling", layout=normgrad.Tokens(prefix=5)),
        _x(32, 32),
        [repr(ENC0), "17 tokens", "prefix=5", "layout="],
    ),
    "vit-stated-grid-does-not-fit": (
        lambda: normgrad.GradCAM(tv_vit(), ENC0, layout=normgrad.Tokens(grid=(5, 5))),
        _x(32, 32),
        [repr(ENC0), "grid=(5, 5)", "layout="],
    ),
    "timm-stated-prefix-and-grid-do-not-fit": (
        lambda: normgrad.NormGrad(
            timm_vit(), "blocks.0", layout=normgrad.Tokens(prefix=1, grid=(4, 4))
        ),
        _x(32, 48),
        ["'blocks.0'", "layout="],
    ),
    "both-readings-fit-no-hint": (
        lambda: normgrad.NormGrad(AmbiguousNet(einsum=True), "act", "scaling"),
        _x(8, 8),
        ["'act'", "channels_first (spatial (8, 8))", "channels_last (spatial (8, 8))", "layout="],
    ),
    "tokens-several-fit-no-hint": (
        lambda: normgrad.NormGrad(TokenNet(17), "act", "scaling"),
        _x(32, 32),
        ["'act'", "prefix 1 + grid (4, 4)", "prefix 8 + grid (3, 3)", "layout="],
    ),
    "tokens-none-fit": (
        lambda: normgrad.GradCAM(TokenNet(200), "act"),
        _x(32, 32),
        ["'act'", "200 tokens", "layout="],
    ),
}


def test_patch_embedding_before_the_prefix_tokens_reads_as_the_models_grid() -> None:
    """timm's patch_embed outputs the 24 patch tokens before the class token is added: the
    model's prefix count does not apply there, its grid does (prefix 0 + grid (4, 6))."""
    model = timm_vit()
    raw = normgrad.NormGrad(model, "patch_embed", "scaling").explain(_x(32, 48), 0)
    assert raw.raw_layer_maps["patch_embed"].shape[2:] == (4, 6)
    stated = normgrad.NormGrad(
        model, "patch_embed", "scaling", layout=normgrad.Tokens(prefix=0, grid=(4, 6))
    ).explain(_x(32, 48), 0)
    torch.testing.assert_close(
        raw.raw_layer_maps["patch_embed"], stated.raw_layer_maps["patch_embed"], rtol=0, atol=0
    )


@pytest.mark.parametrize("case_id", list(LAYOUT_ERRORS))
def test_ambiguous_or_inconsistent_layouts_raise_layer_error(case_id: str) -> None:
    make, x, expected = LAYOUT_ERRORS[case_id]
    explainer = make()
    with pytest.raises(normgrad.LayerError) as info:
        explainer(x, 0)
    message = str(info.value)
    for part in expected:
        assert part in message, (part, message)


@pytest.mark.parametrize(
    "case_id", ["swin-norm-stated-nchw", "swin-norm-stated-tokens", "vit-tokens-stated-nchw"]
)
def test_wrong_stated_layout_messages_suggest_layout(case_id: str) -> None:
    make, x, _ = LAYOUT_ERRORS[case_id]
    with pytest.raises(normgrad.LayerError, match="layout="):
        make()(x, 0)


@pytest.mark.parametrize(
    ("build", "name", "grid", "size"),
    [
        (timm_vit, "blocks.0", (6, 4), (32, 48)),  # (w, h) for (h, w): 24 tokens either way
        (tv_vit, ENC0, (2, 8), (32, 32)),  # 16 patches, but not a grid of a square image
        (tv_vit, ENC0, (3, 3), (32, 32)),  # fits only as 8 prefix tokens; the model has 1
    ],
    ids=["transposed", "wrong-aspect", "contradicts-class-token"],
)
def test_stated_grid_that_does_not_fit_the_input_raises(
    build: Callable[[], nn.Module], name: str, grid: tuple[int, int], size: tuple[int, int]
) -> None:
    explainer = normgrad.NormGrad(build(), name, "scaling", layout=normgrad.Tokens(grid=grid))
    with pytest.raises(normgrad.LayerError, match="layout="):
        explainer(_x(*size), 0)


def test_invalid_layout_arguments_raise_at_construction() -> None:
    model = swin()
    with pytest.raises(normgrad.InvalidArgumentError, match="bogus"):
        normgrad.NormGrad(model, "norm", layout="bogus")
    with pytest.raises(normgrad.InvalidArgumentError, match="bogus"):
        normgrad.GradCAM(model, "norm", layout="bogus")
    with pytest.raises(normgrad.InvalidArgumentError, match=r"layout\['norm'\]"):
        normgrad.NormGrad(model, ["features.0", "norm"], layout={"norm": "bogus"})
    with pytest.raises(normgrad.LayerError, match=r"features\.3"):
        normgrad.NormGrad(model, ["features.0", "norm"], layout={"features.3": "nhwc"})
    with pytest.raises(normgrad.LayerError, match=r"features\.3"):
        normgrad.GradCAM(model, "norm", layout={"features.3": "nhwc"})
    with pytest.raises(normgrad.InvalidArgumentError):
        normgrad.Tokens(prefix=-1)
    with pytest.raises(normgrad.InvalidArgumentError):
        normgrad.Tokens(grid=(4, 0))
    with pytest.raises(normgrad.ArgumentTypeError):
        normgrad.NormGrad(model, "norm", layout=3)  # type: ignore[arg-type]
    one = normgrad.NormGrad(model, "norm", "scaling", layout="nhwc")
    other = normgrad.NormGrad(model, "norm", "conv1x1")
    with pytest.raises(normgrad.InvalidArgumentError, match="two layouts"):
        normgrad.explain_shared([one, other], _x(32, 32))


def test_stating_the_layout_settles_the_ambiguous_cases() -> None:
    x = _x(8, 8).double()
    model = seeded(AmbiguousNet(einsum=True)).double()
    target = torch.tensor([0, 2])
    ((a, g),) = by_hand(model, x, ["act"], target).values()
    for layout, convert in (("channels_first", first), ({"act": "nhwc"}, last)):
        result = normgrad.NormGrad(model, "act", "conv3x3", layout=layout).explain(x, target)
        expected = reference_normgrad_map(convert(a), convert(g), "conv", 3)
        close_raw(result.raw_layer_maps["act"], expected)
    x = _x(32, 32).double()
    model = seeded(TokenNet(17)).double()
    ((a, g),) = by_hand(model, x, ["act"], target).values()
    to_grid = tokens(1, (4, 4))
    expected = reference_normgrad_map(to_grid(a), to_grid(g), "scaling")
    for token_layout in (
        normgrad.Tokens(prefix=1),
        {"act": normgrad.Tokens(prefix=1, grid=(4, 4))},
    ):
        explainer = normgrad.NormGrad(model, "act", "scaling", layout=token_layout)
        result = explainer.explain(x, target)
        close_raw(result.raw_layer_maps["act"], expected)


def test_plain_cnn_with_as_many_channels_as_pixels_is_read_channels_first() -> None:
    model = seeded(PlainCNN()).double()
    x = _x(16, 16).double()
    target = torch.tensor([1, 2])
    ((a, g),) = by_hand(model, x, ["relu"], target).values()
    assert a.shape == (2, 16, 16, 16)
    for vil, (kind, k) in VILS.items():
        result = normgrad.NormGrad(model, "relu", vil).explain(x, target)
        expected = reference_normgrad_map(a, g, kind, k)
        close_raw(result.raw_layer_maps["relu"], expected)
        # the other reading gives another map, so the comparison above tells them apart
        misread = reference_normgrad_map(last(a), last(g), kind, k)
        assert not torch.allclose(misread, expected, rtol=1e-3)
    cam = normgrad.GradCAM(model, "relu").explain(x, target)
    close_raw(cam.raw_layer_maps["relu"], reference_grad_cam(a, g))


# ---------------------------------------------------------------------------------------
# 5. The model is left as it was, after a result and after a layout error
# ---------------------------------------------------------------------------------------

FAMILIES: dict[str, tuple[Callable[[], nn.Module], list[str], dict[str, str]]] = {
    # layers, and a wrong layout for the last one (raised in its hook, mid-forward, after
    # the first layer's hook switched gradients on)
    "vit": (tv_vit, ["conv_proj", ENC0], {ENC0: "nchw"}),
    "swin": (swin, ["features.0", "norm"], {"norm": "nchw"}),
    "convnext": (
        convnext_tiny,
        ["features.0", "features.1.0.block.2"],
        {"features.1.0.block.2": "nchw"},
    ),
}


@pytest.mark.parametrize("method", ["normgrad", "grad-cam"])
@pytest.mark.parametrize("outcome", ["result", "layout-error"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_model_left_unchanged(family: str, outcome: str, method: str) -> None:
    build, layers, wrong = FAMILIES[family]
    model = build().train()
    probe = _x(32, 32)
    before = snapshot(model, probe)
    layout = wrong if outcome == "layout-error" else None
    if method == "normgrad":
        explainer: normgrad.Explainer = normgrad.NormGrad(model, layers, layout=layout)
    else:
        explainer = normgrad.GradCAM(
            model, layers[-1], layout=None if layout is None else layout[layers[-1]]
        )
    if outcome == "result":
        saliency = explainer(probe, torch.tensor([0, 2]))
        assert saliency.shape == (2, 1, 32, 32) and saliency.amax() > 0
    else:
        with pytest.raises(normgrad.LayerError, match=repr(layers[-1])):
            explainer(probe, torch.tensor([0, 2]))
    assert_unchanged(before, snapshot(model, probe))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()
    assert torch._C._len_torch_function_stack() == 0


# ---------------------------------------------------------------------------------------
# The protocol on transformers: evaluate and the randomisation checks
# ---------------------------------------------------------------------------------------


def test_evaluate_accepts_transformers_like_any_cnn() -> None:
    """evaluate's shared pass serves NormGrad on tokens and channels-last layers; its counts
    equal each explainer scored on its own."""
    x = _x(32, 32)
    boxes = [torch.tensor([[0, 0, 15, 15]]), torch.tensor([[16, 16, 31, 31]])] * (x.shape[0] // 2)
    boxes = boxes + [torch.tensor([[8, 8, 23, 23]])] * (x.shape[0] - len(boxes))
    for model, layers in (
        (tv_vit(), [ENC0, "encoder.layers.encoder_layer_1.ln_1"]),
        (swin(), ["features.1", "norm"]),
    ):
        explainers: dict[str, normgrad.Explainer] = {
            "single": normgrad.NormGrad(model, layers[-1], "conv3x3"),
            "multi": normgrad.NormGrad(model, layers, "conv1x1"),
            "cam": normgrad.GradCAM(model, layers[-1]),
        }
        result = normgrad.evaluate(
            model, explainers, [(x, None, boxes)], tolerance=4, progress=False
        )
        for name, explainer in explainers.items():
            alone = metrics.pointing_game(explainer(x), boxes, tolerance=4)
            assert result[name].hits == int(alone.sum()), name
            assert result[name].total == x.shape[0], name


def test_cascading_randomisation_on_transformers() -> None:
    """Randomising from the top down changes a ViT's and a Swin's NormGrad maps, and the
    trained model is left untouched."""
    x = _x(32, 32)
    cases = (
        (
            tv_vit(),
            ENC0,
            ["heads.head", "encoder.ln", "encoder.layers.encoder_layer_1", ENC0, "conv_proj"],
        ),
        (swin(), "features.1", None),  # default blocks: head, norm, features.3, ..., features.0
    )
    for model, layer, blocks in cases:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        result = sanity.cascading_randomization(
            lambda m, layer=layer: normgrad.NormGrad(m, layer, "conv1x1"), model, x, 0, blocks
        )
        assert len(result.blocks) == result.spearman.shape[0] >= 4
        assert result.mean()[-1] < 0.9  # fully randomised below the layer: maps change
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------------------------------
# 6. Blocks whose output reads both ways, settled by how the output was made
# ---------------------------------------------------------------------------------------


class TimmStyleBlock(nn.Module):
    """A ConvNeXt block written as timm writes it: the permutations are calls in ``forward``,
    not modules, and the last registered module is a ``Linear`` of the channels-last MLP,
    while the block hands its output on channels first."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, 4 * channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_dw(x).permute(0, 2, 3, 1)
        h = self.fc2(self.act(self.fc1(self.norm(h))))
        return x + h.permute(0, 3, 1, 2)


class SqueezeExcitation(nn.Module):
    """conv, BN, ReLU, then a gate from two ``Linear`` layers on the pooled channels: the
    block is channels first, its last registered module a ``Linear``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn(self.conv(x)))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean(dim=(2, 3))))))
        return y * gate[:, :, None, None]


class EinsumOut(nn.Module):
    """A block whose output an ``einsum`` lays out channels last: not followed, so asked for."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.out = nn.Linear(channels, channels)  # registered last, never run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw->nhwc", self.conv(x))


class LayerNormHead(nn.Module):
    """A 4x4 stem (8 channels at 8x8 on a 32x32 input: (N, 8, 8, 8) reads both ways), one
    block, a LayerNorm head: not a plain CNN, so the block's kind must settle its layout."""

    def __init__(self, block: nn.Module, channels_last_block: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.block = block
        self.channels_last_block = channels_last_block
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.stem(x))
        pooled = h.mean(dim=(1, 2)) if self.channels_last_block else h.mean(dim=(2, 3))
        return self.head(self.norm(pooled))


@pytest.mark.parametrize("block", [TimmStyleBlock, SqueezeExcitation])
def test_channels_first_block_with_a_linear_last_reads_channels_first(
    block: Callable[[int], nn.Module],
) -> None:
    model = seeded(LayerNormHead(block(8)), 3).double().eval()
    x = _x(32, 32).double()
    target = torch.tensor([1, 2])
    ((a, g),) = by_hand(model, x, ["block"], target).values()
    assert a.shape == (2, 8, 8, 8)
    for vil, (kind, k) in VILS.items():
        result = normgrad.NormGrad(model, "block", vil).explain(x, target)
        expected = reference_normgrad_map(a, g, kind, k)
        close_raw(result.raw_layer_maps["block"], expected)
        misread = reference_normgrad_map(last(a), last(g), kind, k)
        assert not torch.allclose(misread, expected, rtol=1e-3)
    cam = normgrad.GradCAM(model, "block").explain(x, target)
    close_raw(cam.raw_layer_maps["block"], reference_grad_cam(a, g))
    # the block's own modules read as their kinds say; a ReLU alone shows nothing itself and
    # is read by how its input was made (the forward pass followed from the model's input)
    inner = ["block.fc2"] if block is TimmStyleBlock else ["block.bn", "block.relu"]
    for name in inner:
        ((a, g),) = by_hand(model, x, [name], target).values()
        convert = last if name == "block.fc2" else first
        result = normgrad.NormGrad(model, name, "conv3x3").explain(x, target)
        close_raw(
            result.raw_layer_maps[name], reference_normgrad_map(convert(a), convert(g), "conv", 3)
        )


def test_block_whose_output_is_not_followed_asks_for_its_layout() -> None:
    model = seeded(LayerNormHead(EinsumOut(8), channels_last_block=True), 3).double()
    x = _x(32, 32).double()
    target = torch.tensor([1, 2])
    with pytest.raises(normgrad.LayerError, match=r"'block'.*layout=") as info:
        normgrad.NormGrad(model, "block", "scaling").explain(x, target)
    assert "does not show how it was made" in str(info.value)
    assert torch._C._len_torch_function_stack() == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    ((a, g),) = by_hand(model, x, ["block"], target).values()
    stated = normgrad.NormGrad(model, "block", "scaling", layout="nhwc").explain(x, target)
    close_raw(stated.raw_layer_maps["block"], reference_normgrad_map(last(a), last(g), "scaling"))


class LastByCalls(nn.Module):
    """A block that hands its output on channels last by calls in ``forward`` (a permute or
    a movedim, then a ``Linear``), then a GELU module: no LayerNorm, attention or
    ``Permute`` module anywhere in the model, so only how the output was made shows it."""

    def __init__(self, channels: int, movedim: bool) -> None:
        super().__init__()
        self.movedim = movedim
        self.conv = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.mlp = nn.Linear(channels, channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x))
        h = torch.movedim(h, 1, -1) if self.movedim else tf.relu(h).permute(0, 2, 3, 1)
        return self.act(self.mlp(h))


class ConvHead(nn.Module):
    """The 4x4 stem of ``LayerNormHead`` ((N, 8, 8, 8) on a 32x32 input), a block handing
    its output on channels last, a mean over the positions and a ``Linear`` head."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.block = block
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)).mean(dim=(1, 2)))


@pytest.mark.parametrize("movedim", [False, True])
def test_channels_last_block_in_a_model_with_no_layernorm_reads_channels_last(
    movedim: bool,
) -> None:
    """How the output was made comes first: a model with nothing that looks channels last
    (no LayerNorm, attention or ``Permute`` module) is not taken for a plain CNN."""
    model = seeded(ConvHead(LastByCalls(8, movedim)), 3).double().eval()
    x = _x(32, 32).double()
    target = torch.tensor([1, 2])
    # the block, its linear layer, and its GELU (which shows nothing itself: read by how its
    # input was made, the forward pass being followed from the model's input)
    for name in ("block", "block.mlp", "block.act"):
        ((a, g),) = by_hand(model, x, [name], target).values()
        assert a.shape == (2, 8, 8, 8)
        result = normgrad.NormGrad(model, name, "conv3x3").explain(x, target)
        expected = reference_normgrad_map(last(a), last(g), "conv", 3)
        close_raw(result.raw_layer_maps[name], expected)
        assert not torch.allclose(reference_normgrad_map(a, g, "conv", 3), expected, rtol=1e-3)
        cam = normgrad.GradCAM(model, name).explain(x, target)
        close_raw(cam.raw_layer_maps[name], reference_grad_cam(last(a), last(g)))
    # the stem and the block's channels-first modules still read channels first
    for name in ("stem", "block.bn"):
        ((a, g),) = by_hand(model, x, [name], target).values()
        result = normgrad.NormGrad(model, name, "scaling").explain(x, target)
        close_raw(result.raw_layer_maps[name], reference_normgrad_map(a, g, "scaling"))
    assert torch._C._len_torch_function_stack() == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_activation_module_reads_as_its_input_was_made() -> None:
    """A GELU module alone shows nothing: after a convolution it reads channels first, in a
    model that has a LayerNorm (AmbiguousNet); after an ``einsum`` it is asked for (above)."""
    model = seeded(AmbiguousNet()).double()
    x = _x(8, 8).double()
    target = torch.tensor([0, 2])
    ((a, g),) = by_hand(model, x, ["act"], target).values()
    result = normgrad.NormGrad(model, "act", "conv3x3").explain(x, target)
    expected = reference_normgrad_map(a, g, "conv", 3)
    close_raw(result.raw_layer_maps["act"], expected)
    assert not torch.allclose(reference_normgrad_map(last(a), last(g), "conv", 3), expected)


def test_swin_with_as_many_channels_as_positions_reads_channels_last() -> None:
    """torchvision Swin, 16 channels at 16x16 on a 64x64 input: its stage outputs, norms and
    attention read both ways; each is read as its forward made it (channels last)."""
    model = swin(16).double().eval()
    x = _x(64, 64).double()
    target = torch.tensor([0, 2])
    names = ["features.0", "features.1", "features.1.0.attn", "features.1.0.norm1"]
    for name, (a, g) in by_hand(model, x, names, target).items():
        assert a.shape == (2, 16, 16, 16), name
        result = normgrad.NormGrad(model, name, "conv1x1").explain(x, target)
        close_raw(result.raw_layer_maps[name], reference_normgrad_map(last(a), last(g), "conv", 1))
