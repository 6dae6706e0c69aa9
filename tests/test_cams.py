"""Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Eigen-CAM and Score-CAM: the maths against
literal references from the papers (Hypothesis, float64), the explainers against the same
references on hand-written forward passes, and against pytorch-grad-cam where the
definitions coincide."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as tf
import torchvision
from hypothesis import assume, given
from hypothesis import strategies as st
from pytorch_grad_cam import (
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

import normgrad
from normgrad import functional as nf

from .conftest import examples, requires_cuda
from .models import TinyCNN, TinyCNN3d, seeded
from .reference.cams import (
    reference_eigen_cam,
    reference_grad_cam_plus_plus,
    reference_hires_cam,
    reference_layer_cam,
    reference_mask,
    reference_principal_component,
    reference_score_cam,
    reference_xgrad_cam,
)

Pair = tuple[torch.Tensor, torch.Tensor]


@st.composite
def pairs(draw: st.DrawFn) -> Pair:
    """Random float64 activations (some after a ReLU) and gradients, 1 to 3 spatial dims."""
    ndim = draw(st.integers(1, 3))
    side = {1: 9, 2: 5, 3: 3}[ndim]
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)))
    shape += tuple(draw(st.integers(1, side)) for _ in range(ndim))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    a = torch.randn(shape, generator=gen, dtype=torch.float64)
    a = a * draw(st.sampled_from([1e-2, 1.0, 10.0]))
    if draw(st.booleans()):
        a = a.relu()  # post-ReLU activations: exact zeros, whole channels of them
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    return a, g * draw(st.sampled_from([1e-3, 1.0]))


def _close(fast: torch.Tensor, ref: torch.Tensor, tol: float = 1e-10) -> None:
    assert fast.dtype == torch.float64 and fast.shape == ref.shape
    scale = float(ref.abs().max()) + 1e-300
    torch.testing.assert_close(fast, ref, rtol=tol, atol=tol * scale)


GRADIENT_MAPS = {
    "xgrad": (nf.xgrad_cam_map, reference_xgrad_cam),
    "layer": (nf.layer_cam_map, reference_layer_cam),
    "hires": (nf.hires_cam_map, reference_hires_cam),
}


@pytest.mark.parametrize("name", list(GRADIENT_MAPS))
@given(pair=pairs())
def test_gradient_maps_match_the_literal_definitions(name: str, pair: Pair) -> None:
    fast, reference = GRADIENT_MAPS[name]
    _close(fast(*pair), reference(*pair))


@given(pair=pairs(), score=st.floats(-3.0, 3.0))
def test_grad_cam_plus_plus_is_the_general_formula_for_an_exponential_output(
    pair: Pair, score: float
) -> None:
    # Y = exp(s) with s piecewise linear in A: dY = e^s g, d2Y = e^s g^2, d3Y = e^s g^3.
    # The general weights (Eq. 10) are then e^s times the closed form's.
    a, g = pair
    e = math.exp(score)
    general = reference_grad_cam_plus_plus(a, e * g, e * g**2, e * g**3)
    # the denominator 2 g^2 + S g^3 may cancel to rounding: the ratio is then unstable
    total = a.flatten(2).sum(-1)[..., None].expand(*a.shape[:2], a[0, 0].numel())
    denominator = (2 * g**2 + total.reshape(a.shape) * g**3).abs()
    assume(bool(((denominator > 1e-6 * g**2) | (g == 0)).all()))
    _close(nf.grad_cam_plus_plus_map(a, g) * e, general, 1e-8)


def test_grad_cam_plus_plus_is_not_grad_cam() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 4, 5, 5, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 4, 5, 5, generator=gen, dtype=torch.float64)
    assert not torch.allclose(nf.grad_cam_plus_plus_map(a, g), nf.grad_cam_map(a, g))


@given(pair=pairs())
def test_eigen_cam_matches_the_covariance_eigenvector(pair: Pair) -> None:
    a, _ = pair
    for b in range(a.shape[0]):  # a first component well defined, its sign too
        values, first = reference_principal_component(a[b])
        assume(len(values) < 2 or float(values[-1] - values[-2]) > 1e-6 * float(values[-1]))
        assume(float(values[-1]) == 0 or abs(float(first.sum())) > 1e-6)
    _close(nf.eigen_cam_map(a), reference_eigen_cam(a), 1e-7)


def test_eigen_cam_sign_follows_the_channels_not_the_solver() -> None:
    # channels that grow together: the map is high where they are, whatever SVD returns
    a = torch.tensor([[[[0.0, 1.0, 4.0]], [[0.0, 2.0, 5.0]]]], dtype=torch.float64)
    assert nf.eigen_cam_map(a).flatten().argmax() == 2
    # negated activations have the same covariance, hence the same signed component
    _close(nf.eigen_cam_map(-a), -nf.eigen_cam_map(a))


@given(pair=pairs(), data=st.data())
def test_score_cam_pieces_match_the_literal_definitions(pair: Pair, data: st.DataObject) -> None:
    a, scores = pair
    size = tuple(data.draw(st.integers(1, 7)) for _ in a.shape[2:])
    masks = nf.score_cam_masks(a, size)
    for b, k in np.ndindex(*a.shape[:2]):
        _close(masks[b, k], reference_mask(a[b, k], size))
    s = scores.flatten(2)[..., 0] * 5
    expected = torch.zeros(a.shape[0], 1, *a.shape[2:], dtype=torch.float64)
    for b in range(a.shape[0]):
        exps = [math.exp(float(v)) for v in s[b]]
        for k in range(a.shape[1]):
            expected[b, 0] += exps[k] / sum(exps) * a[b, k]
    _close(nf.score_cam_map(a, s), expected)


def _captured(model: nn.Module, x: torch.Tensor, layer: str, classes: torch.Tensor) -> Pair:
    """The layer's activation and the class logit's gradient, from the hand-written pass."""
    out = model.features(x)  # type: ignore[operator]
    score = out["fc"].gather(1, classes[:, None]).sum()
    (gradient,) = torch.autograd.grad(score, out[layer])
    return out[layer].detach(), gradient


EXPLAINED = {
    "grad-cam++": (
        normgrad.GradCAMPlusPlus,
        lambda a, g: reference_grad_cam_plus_plus(a, g, g**2, g**3),
    ),
    "xgrad-cam": (normgrad.XGradCAM, reference_xgrad_cam),
    "layer-cam": (normgrad.LayerCAM, reference_layer_cam),
    "hires-cam": (normgrad.HiResCAM, reference_hires_cam),
    "eigen-cam": (normgrad.EigenCAM, lambda a, g: reference_eigen_cam(a)),
}


@pytest.mark.parametrize("name", list(EXPLAINED))
@pytest.mark.parametrize("volume", [False, True], ids=["2d", "3d"])
def test_explainers_are_the_relu_of_the_map_of_the_captured_layer(name: str, volume: bool) -> None:
    model = seeded(TinyCNN3d() if volume else TinyCNN()).double()
    layer = "relu2" if volume else "conv3"
    shape = (2, 2, 6, 6, 6) if volume else (2, 3, 12, 12)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([1, 2])
    explainer, reference = EXPLAINED[name]
    result = explainer(model, layer).explain(x, classes)
    expected = reference(*_captured(model, x.requires_grad_(), layer, classes)).clamp_min(0)
    _close(result.raw_layer_maps[layer], expected, 1e-9)
    assert float(expected.max()) > 0
    mode = "trilinear" if volume else "bilinear"
    up = tf.interpolate(expected, size=x.shape[2:], mode=mode, align_corners=False)
    assert result.raw is not None
    _close(result.raw, up, 1e-9)


TARGETS: dict[str, Callable[[], normgrad.Target]] = {
    "int": lambda: 3,
    "per-sample": lambda: torch.tensor([0, 4]),
    "predicted": lambda: None,
    "callable": lambda: lambda out: out[:, 2] - out[:, 0],
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_score_cam_matches_the_literal_algorithm(target: str) -> None:
    model = seeded(TinyCNN()).double()
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    result = normgrad.ScoreCAM(model, "relu3", batch_size=5).explain(x, TARGETS[target]())
    with torch.no_grad():
        logits = model(x)
        activation = model.features(x)["relu3"]
    wanted = TARGETS[target]()
    if wanted is None:
        wanted = logits.argmax(1)

    def score(masked: torch.Tensor, b: int) -> float:
        with torch.no_grad():
            out = model(masked)
        if callable(wanted):
            return float(wanted(out)[0])
        k = int(wanted) if isinstance(wanted, int) else int(wanted[b])
        return float(out[0, k])

    expected = reference_score_cam(activation, x, score)
    assert float(expected.max()) > 0
    _close(result.raw_layer_maps["relu3"], expected, 1e-9)


def test_score_cam_on_volumes_and_any_batch_size() -> None:
    model = seeded(TinyCNN3d()).double()
    x = torch.randn(2, 2, 6, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    maps = [
        normgrad.ScoreCAM(model, "relu2", batch_size=b).explain(x, 1).raw_layer_maps["relu2"]
        for b in (1, 3, 64)
    ]
    activation = model.features(x)["relu2"].detach()

    def score(masked: torch.Tensor, b: int) -> float:
        with torch.no_grad():
            return float(model(masked)[0, 1])

    _close(maps[0], reference_score_cam(activation, x, score), 1e-9)
    for other in maps[1:]:
        _close(other, maps[0], 1e-12)


# pytorch-grad-cam ---------------------------------------------------------------------


def _torchvision(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "resnet18":
        return seeded(torchvision.models.resnet18(num_classes=5))
    return seeded(torchvision.models.efficientnet_b0(num_classes=5))


CASES = [("resnet18", "layer3.1"), ("resnet18", "layer4.1"), ("efficientnet_b0", "features.7")]
MODELS = {arch: _torchvision(arch) for arch in {"resnet18", "efficientnet_b0"}}
THEIRS = {
    "grad-cam++": (normgrad.GradCAMPlusPlus, GradCAMPlusPlus),
    "xgrad-cam": (normgrad.XGradCAM, XGradCAM),
    "layer-cam": (normgrad.LayerCAM, LayerCAM),
    "hires-cam": (normgrad.HiResCAM, HiResCAM),
}


def _theirs(kind: type, model: nn.Module, layer: str, x: torch.Tensor, classes: list[int]) -> Pair:
    """pytorch-grad-cam's map at the layer's resolution (after its ReLU) and its final,
    upsampled and normalised map, both ``(N, 1, *spatial)``."""
    copied = copy.deepcopy(model)
    cam = kind(model=copied, target_layers=[copied.get_submodule(layer)])
    try:
        targets = [ClassifierOutputTarget(c) for c in classes]
        final = cam(input_tensor=x, targets=targets)
        store = cam.activations_and_grads
        a = store.activations[0].numpy()
        g = store.gradients[0].numpy() if store.gradients else None
        layer_map = np.maximum(cam.get_cam_image(x, None, targets, a, g, False), 0)
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(layer_map)[:, None], torch.from_numpy(final)[:, None]


def _agree(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4) -> None:
    scale = float(theirs.abs().max())
    assert scale > 0  # the comparison is not between two zero maps
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol * scale)


def _scaled(model: nn.Module, factor: float) -> nn.Module:
    """The model with its logits multiplied by ``factor`` (the head's weights and bias)."""
    scaled = copy.deepcopy(model)
    heads = {"resnet": "fc", "efficientnet": "classifier.1", "vision": "heads.head"}
    kind = type(model).__name__.lower()
    head = scaled.get_submodule(next((h for k, h in heads.items() if k in kind), "head"))
    with torch.no_grad():
        head.weight.mul_(factor)
        head.bias.mul_(factor)
    return scaled


@pytest.mark.parametrize(("arch", "layer"), CASES)
@pytest.mark.parametrize("name", list(THEIRS))
def test_gradient_cams_equal_pytorch_grad_cam(arch: str, layer: str, name: str) -> None:
    ours_kind, their_kind = THEIRS[name]
    model = MODELS[arch]
    if name == "grad-cam++":
        # pytorch-grad-cam adds 1e-6 to Grad-CAM++'s denominator 2 g^2 + S g^3: equal where
        # that is negligible, i.e. where the gradients are large (logits scaled by 1e4)
        model = _scaled(model, 1e4)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    result = ours_kind(model, layer).explain(x, torch.tensor([1, 3]))
    at_layer, final = _theirs(their_kind, model, layer, x, [1, 3])
    _agree(result.raw_layer_maps[layer], at_layer)
    _agree(result.saliency, final)


def test_grad_cam_plus_plus_differs_from_pytorch_grad_cam_by_its_epsilon() -> None:
    model, layer = MODELS["resnet18"], "layer3.1"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    ours = normgrad.GradCAMPlusPlus(model, layer).explain(x, torch.tensor([1, 3]))
    at_layer, _ = _theirs(GradCAMPlusPlus, model, layer, x, [1, 3])
    # the raw logits' gradients are small here: the 1e-6 is not negligible beside g^2
    assert not torch.allclose(ours.raw_layer_maps[layer], at_layer, rtol=1e-2)
    a, g = (
        t.detach()
        for t in _captured_torchvision(model, layer, x, torch.tensor([1, 3]))  # float32
    )
    square = g.double() ** 2
    total = a.double().sum(dim=(2, 3), keepdim=True)
    alpha = square / (2 * square + total * square * g.double() + 1e-6)
    alpha = torch.where(g != 0, alpha, 0)
    weights = (alpha * g.double().clamp_min(0)).sum(dim=(2, 3), keepdim=True)
    with_epsilon = (weights * a.double()).sum(1, keepdim=True).clamp_min(0).float()
    _agree(with_epsilon, at_layer)


def _captured_torchvision(
    model: nn.Module, layer: str, x: torch.Tensor, classes: torch.Tensor
) -> Pair:
    """A torchvision model's layer activation and class gradient, by a plain hook."""
    copied = copy.deepcopy(model).eval()
    kept: list[torch.Tensor] = []
    handle = copied.get_submodule(layer).register_forward_hook(lambda m, i, o: kept.append(o))
    try:
        score = copied(x).gather(1, classes[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, kept[0])
    finally:
        handle.remove()
    return kept[0], gradient


@pytest.mark.parametrize(("arch", "layer"), CASES)
def test_eigen_cam_equals_pytorch_grad_cam_up_to_its_sign(arch: str, layer: str) -> None:
    model = MODELS[arch]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    result = normgrad.EigenCAM(model, layer).explain(x, 0)
    a, _ = _captured_torchvision(model, layer, x, torch.tensor([0, 0]))
    ours = nf.eigen_cam_map(a.detach())
    theirs = torch.from_numpy(get_2d_projection(a.detach().numpy()))[:, None]
    signs = []
    for b in range(2):  # numpy's sign is its own: ours is theirs or its negation
        sign = 1.0 if float((ours[b] * theirs[b]).sum()) >= 0 else -1.0
        _agree(ours[b], sign * theirs[b], 1e-3)
        signs.append(sign)
    relu = (torch.tensor(signs)[:, None, None, None] * theirs).clamp_min(0)
    _agree(result.raw_layer_maps[layer], relu, 1e-3)
    # as BaseCAM: normalised, upsampled, then normalised again over the layers' mean
    final = scale_cam_image(scale_cam_image(relu[:, 0].numpy(), (64, 64)))
    _agree(result.saliency, torch.from_numpy(final)[:, None], 1e-3)


def _bilinear_without_corners(size: tuple[int, int]) -> nn.Module:
    return nn.Upsample(size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    ("arch", "layer"), [("resnet18", "layer2.1"), ("efficientnet_b0", "features.3")]
)
def test_score_cam_equals_pytorch_grad_cam_with_its_masks_upsampled_as_ours(
    arch: str, layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = MODELS[arch]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    result = normgrad.ScoreCAM(model, layer, batch_size=48).explain(x, torch.tensor([2, 0]))
    # pytorch-grad-cam upsamples the masks with align_corners=True: a different map ...
    at_corners, _ = _theirs(ScoreCAM, model, layer, x, [2, 0])
    assert not torch.allclose(result.raw_layer_maps[layer], at_corners, rtol=1e-3)
    # ... and the same one with normgrad's upsampling (align_corners=False)
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _bilinear_without_corners)
    at_layer, final = _theirs(ScoreCAM, model, layer, x, [2, 0])
    _agree(result.raw_layer_maps[layer], at_layer, 1e-3)
    _agree(result.saliency, final, 1e-3)


# transformers and the shared pass ------------------------------------------------------


def _vit() -> tuple[nn.Module, str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=4,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=3,
    )
    # tokens (N, 1 + 16, C): the class token dropped, the 4x4 grid channels first
    return (
        seeded(model),
        normgrad.presets.vit(4).single,
        lambda t: t[:, 1:].reshape(t.shape[0], 4, 4, -1).permute(0, 3, 1, 2),
    )


def _swin() -> tuple[nn.Module, str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    model = torchvision.models.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[2, 2],
        num_classes=3,
    )
    # channels last (N, 4, 4, C) at the last block's first norm
    return seeded(model, 2), normgrad.presets.swin([1, 1]).single, lambda t: t.permute(0, 3, 1, 2)


@pytest.mark.parametrize("family", ["vit", "swin"])
@pytest.mark.parametrize("name", list(THEIRS))
def test_gradient_cams_on_transformer_layers_equal_pytorch_grad_cam(family: str, name: str) -> None:
    model, layer, reshape = _vit() if family == "vit" else _swin()
    if name == "grad-cam++":
        model = _scaled(model, 1e4)
    ours_kind, their_kind = THEIRS[name]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    result = ours_kind(model, layer).explain(x, torch.tensor([0, 2]))
    copied = copy.deepcopy(model)
    cam = their_kind(
        model=copied, target_layers=[copied.get_submodule(layer)], reshape_transform=reshape
    )
    try:
        final = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in (0, 2)])
    finally:
        cam.activations_and_grads.release()
    _agree(result.saliency, torch.from_numpy(final)[:, None])


def test_eigen_and_score_cam_read_token_layers() -> None:
    model, layer, reshape = _vit()
    model = model.double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    tokens: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: tokens.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    a = reshape(tokens[0])
    eigen = normgrad.EigenCAM(model, layer).explain(x)
    _close(eigen.raw_layer_maps[layer], reference_eigen_cam(a).clamp_min(0), 1e-9)
    score = normgrad.ScoreCAM(model, layer, batch_size=32).explain(x, 1)

    def logit(masked: torch.Tensor, b: int) -> float:
        with torch.no_grad():
            return float(model(masked)[0, 1])

    _close(score.raw_layer_maps[layer], reference_score_cam(a, x, logit), 1e-9)


def test_gradient_cams_take_no_pass_of_their_own() -> None:
    model = seeded(TinyCNN())
    calls: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(1))
    cams = [
        kind(model, "relu3")
        for kind in (
            normgrad.GradCAM,
            normgrad.GradCAMPlusPlus,
            normgrad.XGradCAM,
            normgrad.LayerCAM,
            normgrad.HiResCAM,
            normgrad.EigenCAM,
        )
    ]
    try:
        normgrad.explain_shared(cams, torch.randn(2, 3, 16, 16))
    finally:
        handle.remove()
    assert calls == [1]


def _with_constant_channels(model: TinyCNN, killed: list[int], flat: list[int]) -> TinyCNN:
    """``relu3``'s channels ``killed`` zero and ``flat`` 0.5 in every image (their
    convolution's weights zero), the other channels' biases raised so that no other
    channel is constant."""
    with torch.no_grad():
        model.conv3.bias += 5.0
        for channel in killed + flat:
            model.conv3.weight[channel] = 0.0
            model.conv3.bias[channel] = -1.0 if channel in killed else 0.5
    return model


@pytest.mark.parametrize(
    ("killed", "flat", "sizes"),
    [
        ([], [], [2, 10, 10, 10, 2]),  # every pair run: 32 masked images
        ([0, 5, 9], [3], [2, 10, 10, 5]),  # 8 constant pairs share one zero image (first)
    ],
)
def test_score_cam_takes_one_pass_and_one_per_channel_run(
    killed: list[int], flat: list[int], sizes: list[int]
) -> None:
    model = _with_constant_channels(seeded(TinyCNN()), killed, flat)  # 16 channels
    seen: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    try:
        normgrad.ScoreCAM(model, "relu3", batch_size=10).explain(torch.randn(2, 3, 16, 16), 1)
    finally:
        handle.remove()
    # the recorded pass, the zero image where a channel is constant in an image, then the
    # other (image, channel) pairs, 10 masked images per call
    assert seen == sizes


@given(
    killed=st.lists(st.integers(0, 15), max_size=6, unique=True),
    flat=st.lists(st.integers(0, 15), max_size=3, unique=True),
    batch_size=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
@examples(15)
def test_score_cam_with_constant_channels_equals_the_literal_algorithm(
    killed: list[int], flat: list[int], batch_size: int, seed: int
) -> None:
    flat = [c for c in flat if c not in killed]
    model = _with_constant_channels(seeded(TinyCNN(), seed), killed, flat).double().eval()
    x = torch.randn(
        3, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    classes = torch.tensor([1, 4, 0])
    result = normgrad.ScoreCAM(model, "relu3", batch_size=batch_size).explain(x, classes)
    alone = normgrad.ScoreCAM(model, "relu3").explain(x[1:2], classes[1:2])
    a = model.features(x)["relu3"]

    def logit(masked: torch.Tensor, b: int) -> float:
        with torch.no_grad():
            return float(model(masked)[0, classes[b]])

    _close(result.raw_layer_maps["relu3"], reference_score_cam(a, x, logit), 1e-9)
    _close(alone.raw_layer_maps["relu3"], result.raw_layer_maps["relu3"][1:2], 1e-9)


def test_coming_from_maps_every_pytorch_grad_cam_and_captum_method() -> None:
    import inspect
    from pathlib import Path

    import captum.attr
    import pytorch_grad_cam

    page = (Path(__file__).parents[1] / "docs" / "coming-from.md").read_text()
    mapped = page.split("## Every name, mapped")[1].split("\n## ")[0]
    theirs = [
        name
        for module in (pytorch_grad_cam, captum.attr)
        for name in getattr(module, "__all__", dir(module))
        if not name.startswith("_") and inspect.isclass(getattr(module, name))
    ]
    helpers = {"ActivationsAndGradients", "InterpretableInput", "ImageMaskInput"}
    helpers |= {"TextTemplateInput", "TextTokenInput", "TokenReferenceBase", "ProductBaselines"}
    helpers |= {"InterpretableEmbeddingBase", "LLMAttributionResult", "RemoteLLMProvider"}
    helpers |= {"VLLMProvider", "Summarizer", "ClassSummarizer", "SummarizerSingleTensor"}
    helpers |= {"Mean", "StdDev", "MSE", "Var", "Min", "Max", "Sum", "Count"}
    missing = [n for n in theirs if n not in helpers and f"`{n}`" not in mapped]
    assert not missing, missing


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0", "densenet121"])
def test_every_cam_takes_the_presets_single_layer(arch: str) -> None:
    model = getattr(torchvision.models, arch)(num_classes=2)
    cams = normgrad.presets.cam_methods(model, arch)
    assert list(cams) == [
        "Grad-CAM",
        "Grad-CAM++",
        "XGrad-CAM",
        "LayerCAM",
        "HiResCAM",
        "Eigen-CAM",
        "Score-CAM",
    ]
    single = normgrad.presets.layers(arch).single
    assert all(cam.layer[0] == single for cam in cams.values())  # type: ignore[attr-defined]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    saliency = cams["LayerCAM"](x)
    assert saliency.shape == (1, 1, 64, 64) and bool(saliency.isfinite().all())


def test_cams_on_a_transformer_preset() -> None:
    model, layer, _ = _vit()
    cams = normgrad.presets.cam_methods(model, normgrad.presets.vit(4))
    assert {cam.layer[0] for cam in cams.values()} == {layer}  # type: ignore[attr-defined]


def test_the_protocol_gains_them_by_name() -> None:
    from .example_modules import load

    protocol = load("protocol")
    config = protocol.parse(["--quick", "--extra", "Grad-CAM++", "Score-CAM", "Occlusion"])
    model = torchvision.models.resnet18(num_classes=2)
    methods = protocol.explainers_for(model, "resnet18", config.extra)
    paper = normgrad.presets.paper_methods(model, "resnet18")
    assert list(methods) == [*paper, "Grad-CAM++", "Score-CAM", "Occlusion"]
    assert isinstance(methods["Grad-CAM++"], normgrad.GradCAMPlusPlus)
    assert isinstance(methods["Score-CAM"], normgrad.ScoreCAM)
    assert methods["Score-CAM"].layer[0] == "layer4.1" and methods["Score-CAM"].model is model


@requires_cuda
@pytest.mark.parametrize("name", [*EXPLAINED, "score-cam"])
def test_on_cuda_as_on_the_cpu(name: str) -> None:
    model = seeded(TinyCNN()).double()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def build(m: nn.Module) -> normgrad.Explainer:
        if name == "score-cam":
            return normgrad.ScoreCAM(m, "conv3", batch_size=8)
        return EXPLAINED[name][0](m, "conv3")

    on_cpu = build(model).explain(x, torch.tensor([0, 3, 1]))
    on_gpu = build(copy.deepcopy(model).cuda()).explain(x.cuda(), torch.tensor([0, 3, 1]).cuda())
    assert on_gpu.saliency.device.type == "cuda"
    _close(on_gpu.raw_layer_maps["conv3"].cpu(), on_cpu.raw_layer_maps["conv3"], 1e-9)
    _close(on_gpu.saliency.cpu(), on_cpu.saliency, 1e-9)
