"""Segmentation networks: SegmentationTarget's score, every explainer, evaluate, 2-D and 3-D."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from monai.networks.nets import UNet
from torch import nn

import normgrad
from tests.conftest import examples, requires_cuda
from tests.explainers import EXPLAINERS
from tests.models import seeded
from tests.reference.segmentation import reference_segmentation_score


class TinySegNet(nn.Module):
    """Two convolutions and a 1x1 head: per-pixel logits at the input's size."""

    def __init__(self, in_channels: int = 2, classes: int = 3, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv1 = conv(in_channels, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = conv(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.head = conv(8, classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.head(self.relu2(self.conv2(self.relu1(self.conv1(x)))))}


@given(
    seed=st.integers(0, 2**16),
    channels=st.integers(1, 4),
    dims=st.sampled_from([1, 2, 3]),
    given_mask=st.sampled_from([None, "bool", "float", "shared"]),
    reduction=st.sampled_from(["sum", "mean"]),
    data=st.data(),
)
@examples(30)
def test_score_equals_the_sum_by_hand(
    seed: int, channels: int, dims: int, given_mask: str | None, reduction: str, data: Any
) -> None:
    gen = torch.Generator().manual_seed(seed)
    spatial = (3,) * dims
    logits = torch.randn(2, channels, *spatial, generator=gen, dtype=torch.float64)
    k = data.draw(st.integers(0, max(channels, 2) - 1))
    mask: torch.Tensor | None = None
    if given_mask == "bool":
        mask = torch.rand(2, *spatial, generator=gen) > 0.5
    elif given_mask == "float":
        mask = torch.rand(2, *spatial, generator=gen, dtype=torch.float64)
    elif given_mask == "shared":
        mask = torch.rand(*spatial, generator=gen) > 0.7
    target = normgrad.SegmentationTarget(k, mask, reduction)
    logits.requires_grad_()
    got = target({"out": logits, "aux": logits * 2})
    expected = reference_segmentation_score(logits, k, mask, reduction)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # the gradient too: the region is a constant of the score
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    (g_expected,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-12, atol=1e-12)


def test_an_empty_region_scores_zero_without_nan() -> None:
    logits = torch.zeros(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        logits[:, 0] = 1.0  # class 0 everywhere: class 2 has no pixel
    for reduction in ("sum", "mean"):
        score = normgrad.SegmentationTarget(2, reduction=reduction)(logits)
        (grad,) = torch.autograd.grad(score.sum(), logits)
        assert score.tolist() == [0.0] and bool(torch.isfinite(grad).all())


def test_input_gradient_equals_the_gradient_of_the_sum_by_hand() -> None:
    model = seeded(TinySegNet()).double()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, 2:6, 1:4] = True
    for reduction in ("sum", "mean"):
        target = normgrad.SegmentationTarget(1, mask, reduction)
        got = normgrad.Gradient(model).explain(x, target).attribution
        leaf = x.clone().requires_grad_()
        score = reference_segmentation_score(model(leaf)["out"], 1, mask, reduction)
        (expected,) = torch.autograd.grad(score.sum(), leaf)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def _unet(dims: int) -> nn.Module:
    return UNet(dims, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)


def _swin(dims: int) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(
        1,
        3,
        feature_size=12,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
        spatial_dims=dims,
        norm_name="batch",
    )


def _torchvision(name: str) -> Callable[[], nn.Module]:
    build = getattr(torchvision.models.segmentation, name)
    return lambda: build(weights=None, weights_backbone=None, num_classes=3, aux_loss=True)


NETWORKS: dict[str, tuple[Callable[[], nn.Module], list[str], tuple[int, ...]]] = {
    "fcn": (_torchvision("fcn_resnet50"), ["backbone.layer3", "backbone.layer4"], (3, 32, 32)),
    "deeplabv3": (
        _torchvision("deeplabv3_resnet50"),
        ["backbone.layer3", "backbone.layer4"],
        (3, 32, 32),
    ),
    "unet-2d": (lambda: _unet(2), ["model.1.submodule.0", "model.1.submodule.2"], (1, 16, 16)),
    "unet-3d": (lambda: _unet(3), ["model.1.submodule.0", "model.1.submodule.2"], (1, 8, 8, 8)),
    "swin-unetr-2d": (lambda: _swin(2), ["encoder2", "decoder2"], (1, 32, 32)),
    "swin-unetr-3d": (lambda: _swin(3), ["encoder2", "decoder2"], (1, 32, 32, 32)),
}


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("method", ["normgrad", "grad-cam", "gradient", "guided-backprop"])
@pytest.mark.filterwarnings("ignore:layer .* gives a constant map")
@pytest.mark.filterwarnings("ignore:GuidedBackprop. no ReLU ran")  # PReLU, GELU
def test_every_network_is_explained(network: str, method: str) -> None:
    build, layers, shape = NETWORKS[network]
    model = seeded(build())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    explanation = EXPLAINERS[method](model, layers).explain(x, normgrad.SegmentationTarget(1))
    assert explanation.saliency.shape == (2, 1, *shape[1:])
    assert bool(torch.isfinite(explanation.saliency).all())
    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", sorted(EXPLAINERS))
def test_every_explainer_takes_the_target(method: str) -> None:
    model = seeded(TinySegNet(dims=3)).double()
    x = torch.randn(2, 2, 6, 6, 6, dtype=torch.float64)
    target = normgrad.SegmentationTarget(2, reduction="mean")
    explanation = EXPLAINERS[method](model, ["relu1", "relu2"]).explain(x, target)
    assert explanation.saliency.shape == (2, 1, 6, 6, 6)
    assert explanation.classes is None
    assert bool(torch.isfinite(explanation.saliency).all())


@pytest.mark.parametrize("dims", [2, 3])
def test_evaluate_with_segmentation_targets(dims: int) -> None:
    model = seeded(TinySegNet(dims=dims))
    gen = torch.Generator().manual_seed(5)
    size = (12,) * dims if dims == 2 else (6, 8, 8)
    masks = torch.zeros(3, *size, dtype=torch.bool)
    masks[:, 1:4, 2:6] = True
    data = [
        (torch.randn(3, 2, *size, generator=gen), normgrad.SegmentationTarget(1, masks), masks)
        for _ in range(2)
    ]
    explainers = {
        "NormGrad": normgrad.NormGrad(model, "relu2"),
        "Grad-CAM": normgrad.GradCAM(model, "relu2"),
    }
    result = normgrad.evaluate(model, explainers, data, progress=False)
    assert result["NormGrad"].total == 6
    for name, explainer in explainers.items():
        hits = [
            bool(h)
            for x, target, regions in data
            for h in normgrad.metrics.pointing_game(explainer(x, target), regions)
        ]
        assert result[name].hits == sum(hits)
    # deletion follows a class's probability, which a segmentation score does not have
    with pytest.raises(normgrad.InvalidArgumentError, match="leave 'deletion' and 'insertion'"):
        normgrad.evaluate(model, explainers, data, progress=False, metrics=("deletion",))
    assert all(p.grad is None for p in model.parameters()) and not model.training


@pytest.mark.parametrize(
    "arguments, error, pattern",
    [
        ((1.0,), normgrad.ArgumentTypeError, "class_index: expected an int"),
        ((True,), normgrad.ArgumentTypeError, "class_index: expected an int"),
        ((-1,), normgrad.InvalidArgumentError, "class_index: expected an int >= 0"),
        ((1, None, "max"), normgrad.InvalidArgumentError, "reduction: expected 'sum' or 'mean'"),
        ((1, torch.zeros(4, 4, dtype=torch.long)), normgrad.ArgumentTypeError, "mask: expected"),
        ((1, [[True]]), normgrad.ArgumentTypeError, "mask: expected None"),
    ],
)
def test_wrong_arguments_are_refused(arguments: tuple[Any, ...], error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        normgrad.SegmentationTarget(*arguments)


def test_wrong_outputs_and_masks_are_refused() -> None:
    model = seeded(TinySegNet())
    x = torch.randn(2, 2, 8, 8)
    with pytest.raises(normgrad.ShapeError, match=r"mask: expected a region .* got shape \(5, 5\)"):
        normgrad.Gradient(model)(x, normgrad.SegmentationTarget(0, torch.ones(5, 5)))
    with pytest.raises(normgrad.InvalidArgumentError, match=r"class_index: .* \[0, 3\)"):
        normgrad.Gradient(model)(x, normgrad.SegmentationTarget(3))
    with pytest.raises(normgrad.ShapeError, match="per-pixel logits"):
        normgrad.SegmentationTarget(0)(torch.zeros(2, 3))


@requires_cuda
def test_scores_on_cuda_equal_the_cpu() -> None:
    logits = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    mask = torch.rand(2, 5, 5) > 0.5
    for target in (normgrad.SegmentationTarget(1), normgrad.SegmentationTarget(2, mask, "mean")):
        expected = target(logits)
        assert torch.allclose(target({"out": logits.cuda()}).cpu(), expected)
