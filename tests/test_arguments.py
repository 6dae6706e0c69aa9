"""Decisions taken once: arguments checked before any pass is spent, targets resolved once,
regions prepared once per batch, one rule per kind of argument."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import normgrad
from normgrad import ArgumentTypeError, InvalidArgumentError, functional, metrics

from .dispatch_count import count
from .models import TinyCNN, seeded


class CountingModel(nn.Module):
    """Wraps a model and counts its forward calls."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: torch.Tensor) -> Any:
        self.calls += 1
        return self.model(x)


def _counting() -> CountingModel:
    return CountingModel(seeded(TinyCNN()))


class ExplodingData:
    """Data whose first batch fails: reaching it means the arguments were not checked first."""

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("evaluate read the data before checking its arguments")


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"tolerance": -1}, InvalidArgumentError, "tolerance: expected a finite number >= 0"),
        ({"confidence": 1.5}, InvalidArgumentError, r"confidence: expected a number in \(0, 1\)"),
        ({"smoothing_sigma": 0}, InvalidArgumentError, "smoothing_sigma: expected a finite"),
        ({"smoothing_kernel_size": 4}, InvalidArgumentError, "smoothing_kernel_size: expected"),
        ({"smoothing_kernel_size": 2.5}, ArgumentTypeError, "smoothing_kernel_size: expected"),
        ({"spacing": (1.0, -2.0)}, InvalidArgumentError, "spacing: expected"),
    ],
)
def test_evaluate_checks_every_argument_before_the_first_batch(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    model = _counting()
    explainers = {"grad": normgrad.Gradient(model)}
    with pytest.raises(error, match=pattern):
        normgrad.evaluate(model, explainers, ExplodingData(), progress=False, **kwargs)
    assert model.calls == 0


def test_a_vil_that_does_not_fit_the_input_fails_before_the_pass() -> None:
    model = _counting()
    explainer = normgrad.NormGrad(model, "model.conv3", "conv3x3x3")
    with pytest.raises(InvalidArgumentError, match="vil: 'conv3x3x3' needs 3 spatial"):
        explainer(torch.randn(1, 3, 16, 16))
    assert model.calls == 0


@pytest.mark.parametrize("target", [1, [0, 2], torch.tensor([3, 1]), lambda out: out[:, 0]])
@pytest.mark.parametrize("method", ["smoothgrad", "integrated-gradients"])
def test_perturbation_methods_spend_no_extra_pass_on_a_given_target(
    target: object, method: str
) -> None:
    """Only ``target=None`` needs the clean prediction (one forward); other targets are used
    as given: n copies cost n forward passes in chunks of whole copies, nothing more."""
    model = _counting()
    explainer = (
        normgrad.SmoothGrad(normgrad.Gradient(model), n_samples=3, batch_size=2)
        if method == "smoothgrad"
        else normgrad.IntegratedGradients(model, steps=3, batch_size=2)
    )
    result = explainer.explain(torch.randn(2, 3, 16, 16), target)  # type: ignore[arg-type]
    assert model.calls == 3  # one chunk per copy of the batch of 2
    if callable(target):
        assert result.classes is None
    else:
        expected = torch.as_tensor(target).expand(2)
        assert torch.equal(result.classes, expected)
    model.calls = 0
    none = explainer.explain(torch.randn(2, 3, 16, 16))
    assert model.calls == 4  # the prediction, then the copies
    assert none.classes is not None and none.classes.shape == (2,)


def test_regions_are_prepared_once_per_batch() -> None:
    """The work of preparing a batch's boxes (the kernels a run does beyond a run given the
    regions already prepared) is the same for one method as for three, smoothed and not,
    with the reference rows: once per batch."""
    model = seeded(TinyCNN())
    explainers = {
        "grad": normgrad.Gradient(model),
        "ixg": normgrad.InputXGradient(model),
        "cam": normgrad.GradCAM(model, "conv3"),
    }
    x = torch.randn(2, 3, 16, 16)
    boxes = [torch.tensor([[2, 2, 6, 6]]), torch.tensor([[8, 8, 12, 12]])]
    prepared = metrics.prepare_regions(boxes, (2, 16, 16))
    kwargs: dict[str, Any] = {
        "tolerance": 3,
        "smoothing_sigma": 1.0,
        "smoothing_kernel_size": 3,
        "progress": False,
    }

    def kernels(methods: dict[str, normgrad.Explainer], regions: Any) -> int:
        data = [(x, None, regions)] * 2
        return count(lambda: normgrad.evaluate(model, methods, data, **kwargs)).kernels

    def preparing(methods: dict[str, normgrad.Explainer]) -> int:
        return kernels(methods, boxes) - kernels(methods, prepared)

    assert preparing(explainers) == preparing({"grad": explainers["grad"]}) > 0
    result = normgrad.evaluate(model, explainers, [(x, None, boxes)] * 2, **kwargs)
    assert result["grad"].total == 4


@pytest.mark.parametrize(
    "call",
    [
        lambda k: functional.box_sum(torch.rand(1, 1, 8, 8), k),
        lambda k: functional.patch_norm(torch.rand(1, 2, 8, 8), k),
        lambda k: functional.conv_map(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8), k),
        lambda k: metrics.gaussian_kernel(1.0, k),
        lambda k: metrics.smooth(torch.rand(1, 1, 20, 20), 1.0, k),
    ],
)
def test_one_rule_for_every_kernel_size(call: Any) -> None:
    for wrong_type in (2.5, True, "3"):
        with pytest.raises(ArgumentTypeError, match="kernel_size: expected an odd positive int"):
            call(wrong_type)
    for wrong_value in (0, 4, -3):
        with pytest.raises(InvalidArgumentError, match="kernel_size: expected an odd positive int"):
            call(wrong_value)
    call(3)


def test_grad_cam_keeps_its_layer_map_where_normgrad_does() -> None:
    model = seeded(TinyCNN())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    model = model.double()
    cam = normgrad.GradCAM(model, "conv3").explain(x, 1)
    assert list(cam.raw_layer_maps) == ["conv3"] and list(cam.layer_maps) == ["conv3"]
    assert cam.raw_layer_maps["conv3"].shape == (2, 1, 8, 8)  # the layer's resolution
    assert cam.attribution is None
    # the same map NormGrad would give for the same raw layer map
    torch.testing.assert_close(cam.layer_maps["conv3"], cam.saliency)
    torch.testing.assert_close(cam.raw, functional.upsample(cam.raw_layer_maps["conv3"], (16, 16)))
    guided = normgrad.GuidedGradCAM(model, "conv3").explain(x, 1)
    torch.testing.assert_close(guided.raw_layer_maps["conv3"], cam.raw_layer_maps["conv3"])
    assert guided.attribution is not None and guided.attribution.shape == x.shape


def test_a_target_callable_of_a_guided_method_runs_unguided() -> None:
    """An explainer called inside the target callable of Guided Backprop gets plain
    gradients: the guided ReLUs cover the model's forward pass only."""
    model = seeded(TinyCNN()).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    plain = normgrad.Gradient(model).explain(x, 1).attribution
    seen: list[torch.Tensor] = []

    def target(output: torch.Tensor) -> torch.Tensor:
        inner = normgrad.Gradient(model).explain(x, 1).attribution
        assert inner is not None
        seen.append(inner)
        return output[:, 1]

    normgrad.GuidedBackprop(model).explain(x, target)
    assert plain is not None and len(seen) == 1
    torch.testing.assert_close(seen[0], plain, rtol=0, atol=0)
