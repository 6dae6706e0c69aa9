"""NormGrad end to end: against a hand-written computation, on small CNNs and torchvision."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import normgrad

from .conftest import requires_cuda
from .models import TinyCNN, seeded, without_inplace
from .reference.layers import (
    Intermediates,
    efficientnet_intermediates,
    reference_model_normgrad,
    resnet_intermediates,
    tiny_intermediates,
)


def assert_same_saliency(actual: torch.Tensor, expected: torch.Tensor, n_layers: int) -> None:
    """Compare fused maps through their J-th powers (the plain product of the layer maps).

    The J-th root amplifies float32 rounding near zero (1e-12 becomes 1e-3 for J = 4 and
    0.06 for J = 10), so near zero only the products are compared.
    """
    actual = actual.double()
    torch.testing.assert_close(actual**n_layers, expected**n_layers, rtol=1e-4, atol=2e-5)
    # Away from zero the root is well conditioned: its relative error is the product's / J.
    away = expected > 0.1
    torch.testing.assert_close(actual[away], expected[away], rtol=1e-3, atol=2e-5)


CASES = [
    ("tiny", ["conv3"]),
    ("tiny", ["bn1", "relu2", "conv3"]),
    ("resnet18", ["layer4.1"]),
    ("resnet18", ["layer2.0", "layer3.0", "layer4.0", "layer4.1"]),
    ("resnet34", ["layer4.2"]),
    ("resnet34", ["layer2.0", "layer3.0", "layer4.0", "layer4.2"]),
    ("efficientnet_b0", ["features.8.2"]),
    ("efficientnet_b0", [f"features.{i}.0" for i in range(9)] + ["features.8.2"]),
]

_MODELS: dict[str, nn.Module] = {}


def get_model(name: str) -> tuple[nn.Module, Intermediates, int]:
    """A seeded model, its hand-written forward, and a suitable input size."""
    if name not in _MODELS:
        torch.manual_seed(0)
        if name == "tiny":
            _MODELS[name] = seeded(TinyCNN())
        else:
            _MODELS[name] = seeded(getattr(torchvision.models, name)(num_classes=5))
    intermediates = {
        "tiny": tiny_intermediates,
        "resnet18": resnet_intermediates,
        "resnet34": resnet_intermediates,
        "efficientnet_b0": efficientnet_intermediates,
    }[name]
    size = 12 if name == "tiny" else 64
    return _MODELS[name], intermediates, size


@pytest.mark.parametrize(("arch", "layers"), CASES)
@pytest.mark.parametrize("vil", ["scaling", "conv1x1", "conv3x3"])
def test_matches_hand_written_computation(arch: str, layers: list[str], vil: str) -> None:
    model, intermediates, size = get_model(arch)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 3])
    expected = reference_model_normgrad(model, intermediates, x, layers, vil, target)
    result = normgrad.NormGrad(model, layers, vil).explain(x, target)
    assert result.saliency.shape == (2, 1, size, size)
    assert bool(torch.isfinite(result.saliency).all())
    assert result.saliency.min() >= 0 and result.saliency.max() <= 1
    assert_same_saliency(result.saliency, expected, len(layers))
    assert list(result.layer_maps) == layers
    assert torch.equal(result.classes, target)


def test_conv5x5_matches_hand_written_computation() -> None:
    model, intermediates, _ = get_model("resnet18")
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    expected = reference_model_normgrad(model, intermediates, x, ["layer3.1"], "conv5x5")
    actual = normgrad.NormGrad(model, "layer3.1", "conv5x5")(x)
    assert_same_saliency(actual, expected, 1)


@pytest.mark.parametrize(
    ("arch", "layers"),
    [
        ("tiny", ["bn1", "conv2", "conv3"]),
        ("resnet18", ["layer1.0.bn1", "layer1.0.conv2", "layer2.0", "layer4.1"]),
        ("efficientnet_b0", ["features.0.1", "features.3.0", "features.8.1"]),
    ],
)
def test_inplace_activations_give_the_same_maps(arch: str, layers: list[str]) -> None:
    # Each layer listed is followed by an in-place activation in the original model.
    model, _, size = get_model(arch)
    copy = without_inplace(model)
    assert any(getattr(m, "inplace", False) for m in model.modules())
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    for vil in ("scaling", "conv3x3"):
        inplace = normgrad.NormGrad(model, layers, vil).explain(x, 2)
        plain = normgrad.NormGrad(copy, layers, vil).explain(x, 2)
        for name in layers:
            torch.testing.assert_close(inplace.raw_layer_maps[name], plain.raw_layer_maps[name])
        torch.testing.assert_close(inplace.saliency, plain.saliency)


@pytest.mark.parametrize("arch", ["tiny", "resnet18", "efficientnet_b0"])
def test_batch_equals_samples_one_at_a_time(arch: str) -> None:
    model, _, size = get_model(arch)
    layers = {"tiny": ["conv2", "conv3"], "resnet18": ["layer3.0", "layer4.1"]}.get(
        arch, ["features.2.0", "features.8.2"]
    )
    explainer = normgrad.NormGrad(model, layers, "conv3x3")
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(4))
    target = torch.tensor([0, 4, 2])
    batch = explainer(x, target)
    single = torch.cat([explainer(x[i : i + 1], int(target[i])) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-5)


def test_target_forms_agree() -> None:
    model, _, size = get_model("resnet18")
    explainer = normgrad.NormGrad(model, "layer3.1", "conv1x1")
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    predicted = model(x).argmax(1)
    by_none = explainer.explain(x)
    assert torch.equal(by_none.classes, predicted)
    torch.testing.assert_close(by_none.saliency, explainer(x, predicted))
    torch.testing.assert_close(explainer(x, 3), explainer(x, torch.tensor([3, 3])))
    torch.testing.assert_close(explainer(x, [3, 3]), explainer(x, torch.tensor(3)))
    by_callable = explainer.explain(x, lambda out: out[:, 3])
    assert by_callable.classes is None
    torch.testing.assert_close(by_callable.saliency, explainer(x, 3))
    # different classes give different maps: the target really is used
    assert not torch.allclose(explainer(x, 0), explainer(x, 3))


def test_callable_target_explains_a_segmentation_model() -> None:
    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": self.head(self.encoder(x))}

    model = seeded(Segmenter())
    x = torch.randn(2, 1, 10, 10)

    def lesion_score(output: dict[str, torch.Tensor]) -> torch.Tensor:
        return output["out"][:, 1, 2:5, 2:5].sum(dim=(1, 2))

    saliency = normgrad.NormGrad(model, "encoder.0", "conv3x3")(x, lesion_score)
    assert saliency.shape == (2, 1, 10, 10)
    # the score only sees pixels 2..4, so a 3x3 patch norm is zero beyond 1..5
    outside = torch.ones(10, 10, dtype=torch.bool)
    outside[1:6, 1:6] = False
    assert torch.all(saliency[:, 0][:, outside] == 0)


def test_works_under_no_grad_and_with_grad_requiring_input() -> None:
    model, _, size = get_model("tiny")
    explainer = normgrad.NormGrad(model, ["conv2", "conv3"], "scaling")
    x = torch.randn(2, 3, size, size)
    expected = explainer(x, 1)
    with torch.no_grad():
        torch.testing.assert_close(explainer(x, 1), expected)
    with torch.inference_mode():
        inference_x = x.clone()
        inside = explainer(inference_x, 1)
    torch.testing.assert_close(inside, expected)
    torch.testing.assert_close(explainer(inference_x, 1), expected)
    leaf = x.clone().requires_grad_(True)
    torch.testing.assert_close(explainer(leaf, 1), expected)
    assert leaf.grad is None


def test_train_mode_model_is_explained_in_eval_mode() -> None:
    model, _, size = get_model("tiny")
    x = torch.randn(2, 3, size, size)
    model.eval()
    expected = normgrad.NormGrad(model, "conv3", "conv3x3")(x, 0)
    model.train()
    try:
        actual = normgrad.NormGrad(model, "conv3", "conv3x3")(x, 0)
        assert model.training and model.bn1.training and model.dropout.training
    finally:
        model.eval()
    torch.testing.assert_close(actual, expected)


def test_frozen_model_can_be_explained() -> None:
    model = seeded(TinyCNN())
    for p in model.parameters():
        p.requires_grad_(False)
    saliency = normgrad.NormGrad(model, ["conv2", "conv3"], "conv1x1")(torch.randn(1, 3, 8, 8))
    assert saliency.max() > 0
    assert not any(p.requires_grad for p in model.parameters())


def test_layers_given_as_modules() -> None:
    model, _, size = get_model("resnet18")
    x = torch.randn(1, 3, size, size)
    by_name = normgrad.NormGrad(model, ["layer3.0", "layer4.1"], "conv3x3").explain(x)
    by_module = normgrad.NormGrad(model, [model.layer3[0], model.layer4[1]], "conv3x3").explain(x)
    assert list(by_module.layer_maps) == ["layer3.0", "layer4.1"]
    torch.testing.assert_close(by_name.saliency, by_module.saliency)


def test_layer_maps_fuse_to_the_saliency() -> None:
    model, _, size = get_model("resnet18")
    x = torch.randn(2, 3, size, size)
    result = normgrad.NormGrad(model, ["layer2.0", "layer3.0"], "conv3x3").explain(x)
    maps = list(result.layer_maps.values())
    torch.testing.assert_close(result.saliency, (maps[0] * maps[1]).sqrt())
    assert result.raw is None
    single = normgrad.NormGrad(model, "layer3.0", "conv3x3").explain(x)
    assert single.raw is not None and single.raw.shape == (2, 1, size, size)


def test_constant_last_block_is_neutral_in_fusion() -> None:
    # conv3x3 on resnet18's 2x2 last block behind global average pooling: the patch norm
    # covers the whole map everywhere and the gradient is the same at every position.
    model, _, _ = get_model("resnet18")
    x = torch.randn(2, 3, 64, 64)
    explainer = normgrad.NormGrad(model, ["layer3.1", "layer4.1"], "conv3x3")
    result = explainer.explain(x)
    assert result.raw_layer_maps["layer4.1"].shape[-2:] == (2, 2)
    assert torch.equal(result.layer_maps["layer4.1"], torch.zeros(2, 1, 64, 64))
    torch.testing.assert_close(result.saliency, result.layer_maps["layer3.1"])
    assert result.saliency.amax(dim=(1, 2, 3)).min() > 0.99
    alone = normgrad.NormGrad(model, "layer4.1", "conv3x3")(x)
    assert torch.equal(alone, torch.zeros_like(alone))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes(dtype: torch.dtype) -> None:
    model = seeded(TinyCNN()).to(dtype)
    x = torch.randn(2, 3, 12, 12, dtype=dtype)
    saliency = normgrad.NormGrad(model, ["conv2", "conv3"], "conv3x3")(x, 1)
    assert saliency.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert bool(torch.isfinite(saliency).all())
    assert saliency.min() >= 0 and saliency.max() <= 1


def test_float64_model_matches_hand_written() -> None:
    model = seeded(TinyCNN()).double()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    expected = reference_model_normgrad(model, tiny_intermediates, x, ["relu1", "conv3"], "conv3x3")
    actual = normgrad.NormGrad(model, ["relu1", "conv3"], "conv3x3")(x)
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


def test_repr() -> None:
    model, _, _ = get_model("tiny")
    assert repr(normgrad.NormGrad(model, "conv3", "conv5x5")) == (
        "NormGrad(TinyCNN, layers='conv3', vil='conv5x5')"
    )


@requires_cuda
def test_cuda_matches_cpu() -> None:
    """NormGrad on CUDA gives the CPU's maps, in float32: TF32, which PyTorch lets cuDNN
    use for convolutions by default on recent GPUs, is turned off for the comparison (it
    changes these maps by 1e-2). Each layer's map agrees to rounding; the fused map is
    their geometric mean, a cube root here (layer4.1 is constant at 2x2 and left out),
    which turns a change of 1e-7 near a zero into 5e-3: it is compared through its cube,
    the product of the maps, which moves by at most the sum of their changes."""
    model, _, size = get_model("resnet18")
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    layers = ["layer2.0", "layer3.0", "layer4.0", "layer4.1"]
    gpu_model = without_inplace(model).to("cuda")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for chosen in [[layer] for layer in layers[:3]] + [layers]:
            cpu = normgrad.NormGrad(model, chosen, "conv3x3")(x, 1)
            gpu = normgrad.NormGrad(gpu_model, chosen, "conv3x3")(x.to("cuda"), 1)
            assert gpu.device.type == "cuda"
            if len(chosen) == 1:
                torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    torch.testing.assert_close(gpu.cpu() ** 3, cpu**3, rtol=0, atol=1e-4)
