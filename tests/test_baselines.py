"""Baselines agree with Captum, and with values worked out by hand on a tiny model."""

from __future__ import annotations

import copy
import math
import warnings
from functools import partial

import captum.attr as ca
import pytest
import torch
import torch.nn.functional as tf
import torchvision
from torch import nn

import normgrad
from normgrad._explainers import perturbation
from normgrad._explainers.perturbation import image_keys

from .conftest import requires_cuda
from .models import FunctionalReluCNN, TinyCNN, seeded, without_inplace
from .reference.seeds import reference_image_key, reference_seed
from .reference.smoothgrad import reference_smoothgrad


def _model(name: str) -> tuple[nn.Module, int, str]:
    """A seeded model, an input size, and its last convolutional block."""
    torch.manual_seed(0)
    if name == "tiny":
        return seeded(TinyCNN()), 12, "relu3"
    if name == "resnet18":
        return seeded(torchvision.models.resnet18(num_classes=5)), 64, "layer4.1"
    return seeded(torchvision.models.efficientnet_b0(num_classes=5)), 64, "features.8.2"


ARCHS = ["tiny", "resnet18", "efficientnet_b0"]
MODELS = {name: _model(name) for name in ARCHS}
TARGETS = [0, torch.tensor([4, 1, 2]), None]


def _inputs(size: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _captum_target(model: nn.Module, x: torch.Tensor, target: object) -> torch.Tensor:
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1)
    if target is None:
        return predicted
    if isinstance(target, int):
        return torch.full((x.shape[0],), target)
    assert isinstance(target, torch.Tensor)
    return target


def _layer(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", TARGETS, ids=["int", "tensor", "predicted"])
def test_gradient_matches_captum_saliency(arch: str, target: object) -> None:
    model, size, _ = MODELS[arch]
    x = _inputs(size)
    ours = normgrad.Gradient(model).explain(x, target)
    theirs = ca.Saliency(copy.deepcopy(model)).attribute(
        x.clone().requires_grad_(), target=_captum_target(model, x, target), abs=True
    )
    assert ours.raw is not None and ours.attribution is not None
    torch.testing.assert_close(ours.attribution.abs(), theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.raw, theirs.sum(dim=1, keepdim=True), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", TARGETS, ids=["int", "tensor", "predicted"])
def test_input_x_gradient_matches_captum(arch: str, target: object) -> None:
    model, size, _ = MODELS[arch]
    x = _inputs(size)
    ours = normgrad.InputXGradient(model).explain(x, target)
    theirs = ca.InputXGradient(copy.deepcopy(model)).attribute(
        x.clone().requires_grad_(), target=_captum_target(model, x, target)
    )
    assert ours.raw is not None and ours.attribution is not None
    torch.testing.assert_close(ours.attribution, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        ours.raw, theirs.abs().sum(dim=1, keepdim=True), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
@pytest.mark.parametrize("target", TARGETS, ids=["int", "tensor", "predicted"])
def test_guided_backprop_matches_captum(arch: str, target: object) -> None:
    model, size, _ = MODELS[arch]
    x = _inputs(size)
    ours = normgrad.GuidedBackprop(model).explain(x, target)
    # Captum overrides ReLU modules through module backward hooks, which need
    # out-of-place ReLUs; normgrad handles in-place ones and gives the same maps.
    theirs = ca.GuidedBackprop(without_inplace(model)).attribute(
        x.clone().requires_grad_(), target=_captum_target(model, x, target)
    )
    assert ours.attribution is not None
    torch.testing.assert_close(ours.attribution, theirs, rtol=1e-4, atol=1e-6)
    plain = normgrad.Gradient(model).explain(x, target).attribution
    assert plain is not None and not torch.allclose(ours.attribution, plain)


def test_guided_backprop_on_efficientnet_is_the_gradient_with_a_warning() -> None:
    # EfficientNet uses SiLU, which Guided Backpropagation (and Captum) leave alone.
    model, size, _ = MODELS["efficientnet_b0"]
    x = _inputs(size, batch=2)
    with pytest.warns(UserWarning, match="no ReLU ran"):
        guided = normgrad.GuidedBackprop(model).explain(x, 1)
    plain = normgrad.Gradient(model).explain(x, 1)
    assert guided.attribution is not None and plain.attribution is not None
    torch.testing.assert_close(guided.attribution, plain.attribution)
    theirs = ca.GuidedBackprop(copy.deepcopy(model)).attribute(x.clone().requires_grad_(), target=1)
    torch.testing.assert_close(guided.attribution, theirs, rtol=1e-4, atol=1e-6)


def test_guided_backprop_covers_functional_relu() -> None:
    functional = seeded(FunctionalReluCNN())

    class ModuleRelu(nn.Module):
        def __init__(self, source: FunctionalReluCNN) -> None:
            super().__init__()
            self.conv1, self.conv2, self.fc = source.conv1, source.conv2, source.fc
            self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
            return self.fc(x.mean(dim=(2, 3)))

    x = _inputs(10, batch=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = normgrad.GuidedBackprop(functional).explain(x, 2).attribution
    theirs = ca.GuidedBackprop(ModuleRelu(functional)).attribute(
        x.clone().requires_grad_(), target=2
    )
    assert ours is not None
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


class ClampCNN(nn.Module):
    """A ReLU module after the first convolution; after the second, ``clamp``: a ReLU
    written as ``clamp(min=0)`` (``relu_as="clamp"``), a ReLU6 written as ``clamp(0, 6)``
    or a shift (``"relu6"``, ``"shift"``: not ReLUs)."""

    def __init__(self, relu_as: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)
        self.relu_as = relu_as

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.relu(self.conv1(x)))
        if self.relu_as == "clamp":
            h = h.clamp(min=0)
        elif self.relu_as == "clamp_min":
            h = torch.clamp_min(h, 0.0)
        elif self.relu_as == "relu6":
            h = torch.clamp(h, 0, 6)
        else:
            h = h.clamp(min=-1.0)
        return self.fc(h.mean(dim=(2, 3)))


@pytest.mark.parametrize("relu_as", ["clamp", "clamp_min", "relu6", "shift"])
def test_guided_backprop_says_when_a_relu_written_as_a_clamp_is_not_guided(relu_as: str) -> None:
    model = seeded(ClampCNN(relu_as))
    x = _inputs(8, batch=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guided = normgrad.GuidedBackprop(model).explain(x, 1).attribution
        normgrad.GuidedGradCAM(model, "conv2").explain(x, 1)
    messages = [str(w.message) for w in caught]
    said = [m for m in messages if "clamp with min=0" in m]
    if relu_as in ("clamp", "clamp_min"):
        assert len(said) == 2, messages
        assert "1 call(s)" in said[0] and "ClampCNN" in said[0]
        assert "while 1 ReLU call(s) were guided" in said[0]
    else:
        assert not said, messages
    # the clamp is left plain: the result is Guided Backprop with that clamp unguided
    assert guided is not None


def test_only_clamps_as_relus_are_said_with_no_relu() -> None:
    class OnlyClamp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).clamp_min(0).mean(dim=(2, 3)))

    with pytest.warns(UserWarning) as record:
        normgrad.GuidedBackprop(seeded(OnlyClamp())).explain(_inputs(6, batch=2), 0)
    messages = [str(w.message) for w in record]
    assert any("no ReLU ran" in m for m in messages)
    assert any("were not guided, and no ReLU was" in m for m in messages)


def test_guided_backprop_covers_tensor_relu_method() -> None:
    class MethodRelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).relu().mean(dim=(2, 3)))

    model = seeded(MethodRelu())
    x = _inputs(6, batch=2)
    ours = normgrad.GuidedBackprop(model).explain(x, 0).attribution

    class ModuleVersion(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc, self.relu = model.conv, model.fc, nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))

    theirs = ca.GuidedBackprop(ModuleVersion()).attribute(x.clone().requires_grad_(), target=0)
    assert ours is not None
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", TARGETS, ids=["int", "tensor", "predicted"])
def test_grad_cam_matches_captum(arch: str, target: object) -> None:
    model, size, layer = MODELS[arch]
    if arch == "resnet18":
        layer = "layer3.1"  # a 4x4 map: the 2x2 last block is often all zero after the ReLU
    x = _inputs(size)
    ours = normgrad.GradCAM(model, layer).explain(x, target)
    theirs_model = copy.deepcopy(model)
    cam = ca.LayerGradCam(theirs_model, _layer(theirs_model, layer)).attribute(
        x.clone().requires_grad_(), target=_captum_target(model, x, target), relu_attributions=True
    )
    upsampled = ca.LayerAttribution.interpolate(cam, (size, size), interpolate_mode="bilinear")
    assert ours.raw is not None
    assert float(upsampled.detach().max()) > 0  # the comparison is not between two zero maps
    torch.testing.assert_close(ours.raw, upsampled, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
def test_guided_grad_cam_matches_captum(arch: str) -> None:
    model, size, layer = MODELS[arch]
    layer = "layer3.1" if arch == "resnet18" else layer
    x = _inputs(size)
    target = torch.tensor([1, 0, 3])
    ours = normgrad.GuidedGradCAM(model, layer).explain(x, target)
    theirs_model = without_inplace(model)
    explainer = ca.GuidedGradCam(theirs_model, _layer(theirs_model, layer))
    bilinear = explainer.attribute(
        x.clone().requires_grad_(), target=target, interpolate_mode="bilinear"
    )
    assert ours.attribution is not None and float(bilinear.detach().abs().max()) > 0
    torch.testing.assert_close(ours.attribution, bilinear, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        ours.raw, bilinear.abs().sum(dim=1, keepdim=True), rtol=1e-4, atol=1e-6
    )
    # Captum's default upsamples the class activation map with nearest neighbours: a
    # different (blockier) map, hence a documented difference, not an agreement.
    nearest = explainer.attribute(x.clone().requires_grad_(), target=target)
    assert not torch.allclose(ours.attribution, nearest, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
def test_integrated_gradients_matches_captum(arch: str) -> None:
    model, size, _ = MODELS[arch]
    x = _inputs(size, batch=2)
    target = torch.tensor([2, 0])
    ours = normgrad.IntegratedGradients(model, steps=16, batch_size=5).explain(x, target)
    theirs = ca.IntegratedGradients(copy.deepcopy(model)).attribute(
        x.clone(), baselines=0.0, target=target, n_steps=16, method="gausslegendre"
    )
    assert ours.attribution is not None
    torch.testing.assert_close(ours.attribution, theirs, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_trapezoid_differs_from_captum_by_its_weights() -> None:
    # Captum's trapezoid weights are 1/n (halved at the ends): they sum to 1 - 1/n, not 1.
    model, size, _ = MODELS["tiny"]
    x = _inputs(size, batch=2)
    steps = 10
    ours = normgrad.IntegratedGradients(model, steps=steps, method="riemann_trapezoid").explain(
        x, 1
    )
    theirs = ca.IntegratedGradients(copy.deepcopy(model)).attribute(
        x.clone(), baselines=0.0, target=1, n_steps=steps, method="riemann_trapezoid"
    )
    assert ours.attribution is not None
    torch.testing.assert_close(ours.attribution * (steps - 1) / steps, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 40])
def test_quadrature_gauss_legendre_is_exact_to_degree_2n_minus_1(steps: int) -> None:
    from normgrad.functional import quadrature

    alphas, weights = quadrature(steps, "gausslegendre")
    assert len(alphas) == len(weights) == steps
    assert all(0 < a < 1 for a in alphas) and alphas == sorted(alphas)
    # n Gauss-Legendre points integrate every polynomial of degree <= 2n - 1 exactly ...
    for k in range(2 * steps):
        approx = sum(w * a**k for a, w in zip(alphas, weights))
        assert abs(approx - 1 / (k + 1)) < 1e-12, k
    # ... and not degree 2n: on [0, 1] the error for a^(2n) is (n!)^4 / ((2n+1) ((2n)!)^2)
    # (1/12 for n = 1: the midpoint's 1/4 against 1/3); too small to see beyond n = 5
    if steps <= 5:
        n = steps
        error = math.factorial(n) ** 4 / ((2 * n + 1) * math.factorial(2 * n) ** 2)
        approx = sum(w * a ** (2 * n) for a, w in zip(alphas, weights))
        assert approx == pytest.approx(1 / (2 * n + 1) - error, rel=1e-12)


def _cubic(a: float) -> float:
    """f(a) = a^3 - a^2 + a/2: integral over [0, 1] 1/6, f(1) - f(0) = 1/2, f'(1) - f'(0) = 1."""
    return a**3 - a**2 + 0.5 * a


@pytest.mark.parametrize("steps", [1, 2, 7, 40])
@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle"])
def test_quadrature_riemann_error_is_its_euler_maclaurin_term(method: str, steps: int) -> None:
    # Euler-Maclaurin with h = 1/n and [g] = g(1) - g(0); for a cubic (constant f''') the
    # series stops after the h^2 term, so these are the exact errors, not bounds:
    #   left   = I - h/2 [f] + h^2/12 [f']      (O(1/n), from f)
    #   right  = I + h/2 [f] + h^2/12 [f']
    #   middle = I - h^2/24 [f']                (O(1/n^2), from f')
    # A node shifted by d/n moves the sum by about d/n * [f], a weight off by e by e times
    # a value of f: either is far above 1e-12.
    from normgrad.functional import quadrature

    alphas, weights = quadrature(steps, method)
    h = 1 / steps
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    assert alphas == pytest.approx([(i + offset) * h for i in range(steps)], abs=1e-15)
    assert weights == pytest.approx([h] * steps, abs=1e-15)
    jump, slope_jump = 0.5, 1.0
    error = {
        "riemann_left": -h / 2 * jump + h**2 / 12 * slope_jump,
        "riemann_right": h / 2 * jump + h**2 / 12 * slope_jump,
        "riemann_middle": -(h**2) / 24 * slope_jump,
    }[method]
    approx = sum(w * _cubic(a) for a, w in zip(alphas, weights))
    assert abs(approx - (1 / 6 + error)) < 1e-12


@pytest.mark.parametrize("steps", [2, 3, 7, 40])
def test_quadrature_trapezoid_error_is_its_euler_maclaurin_term(steps: int) -> None:
    # n points, n - 1 intervals of h = 1/(n - 1), weights h halved at both ends (they sum to
    # 1, unlike Captum's 1/n). For a cubic the error is exactly h^2/12 [f'] = h^2/12 (O(1/n^2)).
    from normgrad.functional import quadrature

    alphas, weights = quadrature(steps, "riemann_trapezoid")
    h = 1 / (steps - 1)
    assert alphas == pytest.approx([i * h for i in range(steps)], abs=1e-15)
    assert weights == pytest.approx([h / 2] + [h] * (steps - 2) + [h / 2], abs=1e-15)
    approx = sum(w * _cubic(a) for a, w in zip(alphas, weights))
    assert abs(approx - (1 / 6 + h**2 / 12)) < 1e-12


def test_integrated_gradients_completeness_and_batching() -> None:
    model, size, _ = MODELS["resnet18"]
    x = _inputs(size, batch=2)
    baseline = torch.full_like(x, 0.1)
    small = normgrad.IntegratedGradients(model, steps=64, baseline=baseline, batch_size=2).explain(
        x, 3
    )
    large = normgrad.IntegratedGradients(model, steps=64, baseline=0.1, batch_size=256).explain(
        x, 3
    )
    assert small.attribution is not None and large.attribution is not None
    torch.testing.assert_close(small.attribution, large.attribution, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        gap = model(x)[:, 3] - model(baseline)[:, 3]
    total = small.attribution.sum(dim=(1, 2, 3))
    torch.testing.assert_close(total, gap, rtol=0.05, atol=0.05)


def test_reference_seed_is_splitmix64() -> None:
    # the first output of splitmix64 seeded with 0 (Vigna's reference implementation)
    assert reference_seed(0) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_image_keys_are_the_literal_keys(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the dtype, the memory format and the block of values read per step."""
    x = torch.randn(3, 2, 5, 7, generator=torch.Generator().manual_seed(2)).to(dtype)
    x[1] = x[0].flip(-1)  # the same values, elsewhere: another key
    expected = [reference_image_key(x[i]) for i in range(3)]
    assert len(set(expected)) == 3
    assert image_keys(x) == expected
    assert image_keys(x.contiguous(memory_format=torch.channels_last)) == expected
    assert image_keys(x[2:]) == expected[2:]
    monkeypatch.setattr(perturbation, "_KEY_BLOCK", 7)  # 2 values of each sample a step
    assert image_keys(x) == expected


def test_smoothgrad_is_the_mean_of_noisy_maps() -> None:
    """A literal reference: copy k of image i draws randn from a CPU generator seeded with
    splitmix64 of (seed, the image's key, k), and is explained alone."""
    model = copy.deepcopy(MODELS["tiny"][0]).double()
    x = _inputs(MODELS["tiny"][1], batch=2).double()
    base = normgrad.Gradient(model)
    smooth = normgrad.SmoothGrad(base, n_samples=5, noise_level=0.2, batch_size=4, seed=3)
    result = smooth.explain(x, torch.tensor([1, 2]))
    assert result.raw is not None
    for i, label in enumerate([1, 2]):
        expected = reference_smoothgrad(partial(_raw, base, target=label), x[i], 3, 5, 0.2)
        _close_to_scale(result.raw[i : i + 1], expected, 1e-12)
    for batch_size in (1, 2, 100):
        other = normgrad.SmoothGrad(
            base, n_samples=5, noise_level=0.2, batch_size=batch_size, seed=3
        )
        other_raw = other.explain(x, torch.tensor([1, 2])).raw
        assert other_raw is not None
        _close_to_scale(other_raw, result.raw, 1e-12)
    reseeded = normgrad.SmoothGrad(base, n_samples=5, noise_level=0.2, seed=4)
    assert not torch.allclose(reseeded.explain(x, torch.tensor([1, 2])).saliency, result.saliency)


def _raw(explainer: normgrad.Explainer, x: torch.Tensor, target: int) -> torch.Tensor:
    raw = explainer.explain(x, target).raw
    assert raw is not None
    return raw


def _close_to_scale(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("inner", ["gradient", "normgrad", "grad-cam"])
def test_smoothgrad_of_an_image_does_not_depend_on_its_batch(inner: str) -> None:
    """Alone, in batches of other images, in another order, twice in one batch: the same
    map (the noise is drawn per image; no root is taken, so float64 maps agree tightly)."""
    model = copy.deepcopy(MODELS["resnet18"][0]).double()
    x = _inputs(32, batch=4, seed=7).double()
    x[3] = x[0].flip(-1)  # the same values elsewhere: another key, other noise
    base = {
        "gradient": lambda: normgrad.Gradient(model),
        "normgrad": lambda: normgrad.NormGrad(model, "layer2.0"),
        "grad-cam": lambda: normgrad.GradCAM(model, "layer3"),
    }[inner]()
    smooth = normgrad.SmoothGrad(base, n_samples=3, noise_level=0.3, batch_size=5, seed=1)
    labels = torch.tensor([0, 1, 2, 3])
    alone = [smooth.explain(x[i : i + 1], int(labels[i])) for i in range(4)]
    for order in ([0, 1, 2, 3], [2, 0], [3, 1, 0, 0], [1, 2, 3, 0]):
        batch = smooth.explain(x[order], labels[order])
        assert batch.raw is not None
        for position, i in enumerate(order):
            expected = alone[i].raw
            assert expected is not None
            _close_to_scale(batch.raw[position : position + 1], expected, 1e-9)
    assert alone[0].raw is not None and alone[3].raw is not None
    assert not torch.allclose(alone[3].raw, alone[0].raw.flip(-1), rtol=1e-3)


@requires_cuda
def test_smoothgrad_noise_on_cuda_depends_on_the_image_alone() -> None:
    """On CUDA: the keys are the CPU's (exact integer sums), the noise is drawn from a CUDA
    generator seeded as on the CPU, and an image's map does not depend on its batch."""
    model = copy.deepcopy(MODELS["tiny"][0]).double().cuda()
    x = _inputs(MODELS["tiny"][1], batch=3).double()
    keys = [reference_image_key(x[i]) for i in range(3)]
    assert image_keys(x.cuda()) == image_keys(x) == keys
    base = normgrad.Gradient(model)
    smooth = normgrad.SmoothGrad(base, n_samples=3, noise_level=0.2, batch_size=4, seed=3)
    labels = torch.tensor([0, 1, 2])
    batch = smooth.explain(x.cuda(), labels).raw
    assert batch is not None and batch.device.type == "cuda"
    for i in range(3):
        alone = smooth.explain(x[i : i + 1].cuda(), i).raw
        assert alone is not None
        _close_to_scale(batch[i : i + 1], alone, 1e-9)
    expected = reference_smoothgrad(partial(_raw, base, target=0), x[0].cuda(), 3, 3, 0.2)
    assert expected.device.type == "cuda"
    _close_to_scale(batch[:1], expected, 1e-9)


def test_smoothgrad_without_noise_is_the_wrapped_explainer() -> None:
    # float64: the copies run as a batch of 6 against 2 here, and in float32 the other
    # convolution algorithms' rounding, magnified by the square root of the fused maps near
    # zero, would decide the tolerance
    model = copy.deepcopy(MODELS["resnet18"][0]).double()
    x = _inputs(MODELS["resnet18"][1], batch=2).double()
    for base in (
        normgrad.GradCAM(model, "layer3.1"),
        normgrad.NormGrad(model, ["layer3.0", "layer4.0"]),
    ):
        smooth = normgrad.SmoothGrad(base, n_samples=3, noise_level=0.0)
        # the mean of identical maps, min-max normalised again
        expected = normgrad.functional.min_max_normalize(base(x))
        torch.testing.assert_close(smooth(x), expected, rtol=1e-9, atol=1e-9)


def test_smoothgrad_predicted_class_is_the_clean_one() -> None:
    model, size, _ = MODELS["tiny"]
    x = _inputs(size, batch=3)
    result = normgrad.SmoothGrad(normgrad.Gradient(model), n_samples=2, noise_level=1.0).explain(x)
    with torch.no_grad():
        assert torch.equal(result.classes, model(x).argmax(1))


class HandSet(nn.Module):
    """conv 1x1 (1 -> 2, weights 1 and -1) -> ReLU -> mean pool -> linear [[1, 2], [3, -1]]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


# x = [2, -1]: ReLU output ch0 = [2, 0], ch1 = [0, 1]; pooled (1, 0.5); logits (2, 2.5).
# Class 1: dlogit/dReLU-out = ch0 [1.5, 1.5], ch1 [-0.5, -0.5] (3 and -1, times 1/2).
#   plain backward through the ReLU mask: ch0 [1.5, 0], ch1 [0, -0.5] -> dx = [1.5, 0.5]
#   guided: the negative ch1 gradient is dropped -> dx = [1.5, 0]
#   Grad-CAM at the ReLU: weights (1.5, -0.5), map 1.5*[2, 0] - 0.5*[0, 1] = [3, -0.5] -> [3, 0]
#   NormGrad scaling: |(1.5*2, -0.5*0)| = 3, |(0, -0.5*1)| = 0.5
#   NormGrad conv1x1: |g| = sqrt(2.5) at both positions, |x| = 2 and 1
#   Integrated Gradients (zero baseline, piecewise linear, no bias) = x * dx = [3, -0.5]
HAND_X = torch.tensor([[[[2.0, -1.0]]]])
SQRT_2_5 = 2.5**0.5


@pytest.mark.parametrize(
    ("factory", "raw", "attribution"),
    [
        (lambda m: normgrad.Gradient(m), [1.5, 0.5], [1.5, 0.5]),
        (lambda m: normgrad.InputXGradient(m), [3.0, 0.5], [3.0, -0.5]),
        (lambda m: normgrad.GuidedBackprop(m), [1.5, 0.0], [1.5, 0.0]),
        (lambda m: normgrad.GradCAM(m, "relu"), [3.0, 0.0], None),
        (lambda m: normgrad.GuidedGradCAM(m, "relu"), [4.5, 0.0], [4.5, 0.0]),
        (lambda m: normgrad.IntegratedGradients(m, steps=7), [3.0, 0.5], [3.0, -0.5]),
        (lambda m: normgrad.NormGrad(m, "relu", "scaling"), [3.0, 0.5], None),
        (lambda m: normgrad.NormGrad(m, "relu", "conv1x1"), [2 * SQRT_2_5, SQRT_2_5], None),
    ],
    ids=[
        "gradient",
        "ixg",
        "guided",
        "gradcam",
        "guided-gradcam",
        "ig",
        "ng-scaling",
        "ng-conv1x1",
    ],
)
def test_golden_values(factory: object, raw: list[float], attribution: list[float] | None) -> None:
    model = HandSet().eval()
    result = factory(model).explain(HAND_X, 1)  # type: ignore[operator]
    torch.testing.assert_close(result.raw.flatten(), torch.tensor(raw), rtol=1e-6, atol=1e-6)
    if attribution is not None:
        torch.testing.assert_close(
            result.attribution.flatten(), torch.tensor(attribution), rtol=1e-6, atol=1e-6
        )
    expected = torch.tensor(raw)
    expected = (expected - expected.min()) / (expected.max() - expected.min() + 1e-8)
    torch.testing.assert_close(result.saliency.flatten(), expected, rtol=1e-6, atol=1e-6)


def test_golden_grad_cam_layer_map() -> None:
    # the signed map at the layer is [3, -0.5] (see the table above); Grad-CAM keeps its
    # ReLU as the layer's raw map, and has no input-space attribution
    result = normgrad.GradCAM(HandSet().eval(), "relu").explain(HAND_X, 1)
    torch.testing.assert_close(result.raw_layer_maps["relu"].flatten(), torch.tensor([3.0, 0.0]))
    assert result.attribution is None


def test_golden_constant_maps_are_zero() -> None:
    model = HandSet().eval()
    # class 0: Grad-CAM weights (0.5, 1) give [1, 1]; Input x Gradient gives |[1, 1]|
    for explainer in (normgrad.GradCAM(model, "relu"), normgrad.InputXGradient(model)):
        result = explainer.explain(HAND_X, 0)
        torch.testing.assert_close(result.raw.flatten(), torch.tensor([1.0, 1.0]))
        assert torch.equal(result.saliency, torch.zeros(1, 1, 1, 2))
    # a 3x3 patch covers both pixels: the conv3x3 map is constant
    assert torch.equal(
        normgrad.NormGrad(model, "relu", "conv3x3")(HAND_X, 1), torch.zeros(1, 1, 1, 2)
    )


def test_grad_cam_sees_the_residual_addition() -> None:
    # The reference code's ResNet Grad-CAM hooked before the residual add; hooking the block
    # output includes it. Check against the block output computed by hand.
    model, size, _ = MODELS["resnet18"]
    x = _inputs(size, batch=1)
    block = model.layer3[1]
    with torch.enable_grad():
        h = model.layer3[0](
            model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))
        )
        out = block(h)
        logits = model.fc(torch.flatten(model.avgpool(model.layer4(out)), 1))
        (g,) = torch.autograd.grad(logits[0, 2], out)
    cam = tf.relu((g.mean(dim=(2, 3), keepdim=True) * out).sum(1, keepdim=True)).detach()
    expected = tf.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
    torch.testing.assert_close(normgrad.GradCAM(model, "layer3.1").explain(x, 2).raw, expected)
