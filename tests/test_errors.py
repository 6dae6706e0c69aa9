"""Bad input gets a clear error naming the argument, what was expected and what arrived."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import normgrad
from normgrad import ArgumentTypeError, InvalidArgumentError, LayerError, NormGradError, ShapeError

from .explainers import EXPLAINERS
from .models import TinyCNN, seeded

RESNET = seeded(torchvision.models.resnet18(num_classes=5))
X = torch.randn(2, 3, 32, 32)


def test_error_classes_subclass_builtins() -> None:
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(ArgumentTypeError, TypeError)
    assert issubclass(LayerError, LookupError)
    for cls in (InvalidArgumentError, ArgumentTypeError, LayerError, ShapeError):
        assert issubclass(cls, NormGradError)


def test_unknown_layer_suggests_near_names() -> None:
    with pytest.raises(LayerError) as info:
        normgrad.NormGrad(RESNET, "layer5", "conv3x3")
    message = str(info.value)
    assert "'layer5' not found in ResNet" in message
    assert "did you mean" in message and "'layer4'" in message
    assert "available: conv1, bn1" in message


def test_typo_in_nested_layer_name() -> None:
    with pytest.raises(LayerError, match=r"did you mean 'layer4\.1'"):
        normgrad.NormGrad(RESNET, "layer4.l", "conv3x3")


def test_layer_never_reached() -> None:
    model = seeded(TinyCNN())
    model.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(
        LayerError,
        match=r"'unused' never ran in the forward pass of TinyCNN.*the forward pass reaches",
    ):
        normgrad.NormGrad(model, ["conv2", "unused"], "scaling")(torch.randn(1, 3, 8, 8))


def test_layer_run_twice() -> None:
    # torchvision's BasicBlock applies its one ReLU module twice.
    with pytest.raises(LayerError, match=r"'layer1\.0\.relu' ran 2 times.*explain the block"):
        normgrad.NormGrad(RESNET, "layer1.0.relu", "scaling")(X)


def test_layer_that_does_not_influence_the_score() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3, padding=1)
            self.side = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.side(x)
            return self.fc(self.body(x).mean(dim=(2, 3)))

    with pytest.raises(LayerError, match="does not depend on layer"):
        normgrad.NormGrad(TwoHeads(), ["body", "side"], "scaling")(torch.randn(1, 3, 6, 6))


def test_layer_with_non_spatial_output() -> None:
    with pytest.raises(
        LayerError, match=r"layer 'fc' to output a feature map or tokens of the batch of 2, got "
    ):
        normgrad.NormGrad(RESNET, "fc", "scaling")(X)


@pytest.mark.parametrize("layers", [3, [3], None, ["layer4", 2.5]])
def test_layer_of_wrong_type(layers: object) -> None:
    with pytest.raises(ArgumentTypeError, match="layers: expected"):
        normgrad.NormGrad(RESNET, layers, "scaling")  # type: ignore[arg-type]


def test_layer_module_of_another_model() -> None:
    other = nn.Conv2d(3, 3, 1)
    with pytest.raises(LayerError, match="not a submodule of ResNet"):
        normgrad.NormGrad(RESNET, other, "scaling")


def test_empty_and_repeated_layers() -> None:
    with pytest.raises(LayerError, match="at least one layer"):
        normgrad.NormGrad(RESNET, [], "scaling")
    with pytest.raises(LayerError, match="more than once"):
        normgrad.NormGrad(RESNET, ["layer4", RESNET.layer4], "scaling")


@pytest.mark.parametrize(
    ("vil", "error", "pattern"),
    [
        ("conv4x4", InvalidArgumentError, "vil: expected an odd kernel size.*'conv4x4'"),
        ("gradcam", InvalidArgumentError, "vil: expected 'scaling', 'conv1x1'.*'gradcam'"),
        (3, ArgumentTypeError, "vil: expected a string.*int 3"),
    ],
)
def test_bad_vil(vil: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        normgrad.NormGrad(RESNET, "layer4", vil)  # type: ignore[arg-type]


def test_model_of_wrong_type() -> None:
    with pytest.raises(
        ArgumentTypeError, match=r"model: expected a torch\.nn\.Module, got function"
    ):
        normgrad.NormGrad(lambda x: x, "layer4", "scaling")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "pattern"),
    [
        (
            torch.randn(3, 32, 32),
            r"x: expected a 4-D .* got a 3-D tensor of shape \(3, 32, 32\); add a batch",
        ),
        (torch.randn(2, 3, 32), r"x: expected a 4-D .* got a 3-D tensor"),
        (torch.randn(1, 1, 2, 3, 32, 32), r"got a 6-D tensor"),
    ],
)
def test_input_of_wrong_rank(x: torch.Tensor, pattern: str) -> None:
    with pytest.raises(ShapeError, match=pattern) as info:
        normgrad.NormGrad(RESNET, "layer4", "scaling")(x)
    assert info.value.actual_shape == tuple(x.shape)


def test_input_not_a_tensor_or_not_float() -> None:
    with pytest.raises(ArgumentTypeError, match=r"x: expected a tensor.*got ndarray"):
        normgrad.NormGrad(RESNET, "layer4", "scaling")(X.numpy())  # type: ignore[arg-type]
    with pytest.raises(
        ArgumentTypeError, match=r"x: expected a floating point tensor, got dtype torch\.int64"
    ):
        normgrad.NormGrad(RESNET, "layer4", "scaling")(X.long())


def test_input_channels_do_not_match_first_layer() -> None:
    with pytest.raises(
        ShapeError, match=r"x: expected 3 channels \(the first layer 'conv1' takes 3\), got 1"
    ):
        normgrad.NormGrad(RESNET, "layer4", "scaling")(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input(value: float) -> None:
    x = X.clone()
    x[1, 2, 3, 4] = value
    with pytest.raises(
        InvalidArgumentError, match="x: expected finite values, got 1 NaN or infinite"
    ):
        normgrad.NormGrad(RESNET, "layer4", "scaling")(x)


@pytest.mark.parametrize(
    ("target", "error", "pattern"),
    [
        (5, InvalidArgumentError, r"target: expected class indices in \[0, 5\) .* got \[5\]"),
        (-1, InvalidArgumentError, "target: expected a class index >= 0, got -1"),
        (torch.tensor([0, 9]), InvalidArgumentError, r"in \[0, 5\).*got \[9\]"),
        (
            torch.tensor([0, 1, 2]),
            ShapeError,
            r"target: expected an int, one class index per sample \(shape \(2,\)\) or K per "
            r"sample \(shape \(2, K\), K >= 1\), got shape \(3,\)",
        ),
        (torch.tensor([[0, 1]]), ShapeError, r"got shape \(1, 2\)"),
        (
            torch.tensor([0.0, 1.0]),
            ArgumentTypeError,
            "target: expected an integer tensor.*torch.float32",
        ),
        (True, ArgumentTypeError, "target: expected None, an int"),
        ("cat", ArgumentTypeError, "target: expected None, an int.*str 'cat'"),
        (
            lambda out: out.sum(),
            ShapeError,
            r"target: expected the callable to return one score per sample, a tensor of shape \(2,\)",
        ),
    ],
)
def test_bad_target(target: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        normgrad.NormGrad(RESNET, "layer4", "scaling")(X, target)  # type: ignore[arg-type]


def test_class_target_on_non_classifier_output() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    with pytest.raises(
        ShapeError,
        match=r"model output: expected logits of shape \(2, num_classes\).*pass target=callable",
    ):
        normgrad.NormGrad(model, "0", "scaling")(X)


@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_every_explainer_rejects_bad_input(method: str) -> None:
    explainer = EXPLAINERS[method](RESNET, ["layer3.1", "layer4.1"])
    with pytest.raises(ShapeError, match="x: expected a 4-D"):
        explainer(torch.randn(3, 32, 32))
    with pytest.raises(InvalidArgumentError, match="x: expected finite values"):
        explainer(X * float("nan"))
    with pytest.raises(ShapeError, match="x: expected 3 channels"):
        explainer(torch.randn(2, 1, 32, 32))
    with pytest.raises(InvalidArgumentError, match=r"target: expected class indices in \[0, 5\)"):
        explainer(X, 7)
    with pytest.raises(ShapeError, match=r"target: expected an int, one class index per sample"):
        explainer(X, torch.tensor([1, 2, 3]))
    with pytest.raises(ArgumentTypeError, match="target: expected None"):
        explainer(X, "cat")  # type: ignore[arg-type]


def test_grad_cam_takes_one_layer() -> None:
    with pytest.raises(LayerError, match="layer: expected one layer, got 2"):
        normgrad.GradCAM(RESNET, ["layer3", "layer4"])
    with pytest.raises(LayerError, match="'layer9' not found"):
        normgrad.GuidedGradCAM(RESNET, "layer9")


def test_smoothgrad_arguments() -> None:
    base = normgrad.Gradient(RESNET)
    with pytest.raises(ArgumentTypeError, match="explainer: expected a normgrad explainer"):
        normgrad.SmoothGrad(RESNET)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="n_samples: expected a positive int, got 0"):
        normgrad.SmoothGrad(base, n_samples=0)
    with pytest.raises(
        InvalidArgumentError, match=r"noise_level: expected a finite number >= 0, got -0\.1"
    ):
        normgrad.SmoothGrad(base, noise_level=-0.1)
    with pytest.raises(ArgumentTypeError, match="batch_size: expected a positive int, got float"):
        normgrad.SmoothGrad(base, batch_size=2.5)  # type: ignore[arg-type]


def test_integrated_gradients_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="steps: expected a positive int, got 0"):
        normgrad.IntegratedGradients(RESNET, steps=0)
    with pytest.raises(InvalidArgumentError, match="method: expected one of gausslegendre"):
        normgrad.IntegratedGradients(RESNET, method="simpson")
    with pytest.raises(
        InvalidArgumentError, match="steps: expected at least 2 for riemann_trapezoid"
    ):
        normgrad.IntegratedGradients(RESNET, steps=1, method="riemann_trapezoid")
    with pytest.raises(ArgumentTypeError, match="baseline: expected None, a number or a tensor"):
        normgrad.IntegratedGradients(RESNET, baseline="black")  # type: ignore[arg-type]
    with pytest.raises(
        ShapeError,
        match=r"baseline: expected a tensor broadcastable to the input shape \(2, 3, 32, 32\), got shape \(5, 5\)",
    ):
        normgrad.IntegratedGradients(RESNET, baseline=torch.zeros(5, 5))(X)
