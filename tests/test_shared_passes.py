"""Every method from shared passes: equal to each explainer alone, in two passes per batch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import normgrad

from .models import TinyCNN, seeded

LAYERS = ["conv2", "relu3"]


def paper_methods(model: nn.Module) -> dict[str, normgrad.Explainer]:
    """The paper's ten methods (six NormGrad variants and four baselines), on small layers."""
    return normgrad.presets.paper_methods(model, normgrad.presets.LayerPreset("relu3", LAYERS))


def every_method(model: nn.Module) -> dict[str, normgrad.Explainer]:
    methods = paper_methods(model)
    methods["gradient"] = normgrad.Gradient(model)
    methods["grad-cam conv2"] = normgrad.GradCAM(model, "conv2")
    methods["smoothgrad"] = normgrad.SmoothGrad(normgrad.Gradient(model), n_samples=2, seed=1)
    methods["integrated gradients"] = normgrad.IntegratedGradients(model, steps=3)
    for cam in (normgrad.GradCAMPlusPlus, normgrad.XGradCAM, normgrad.LayerCAM, normgrad.HiResCAM):
        methods[cam.__name__] = cam(model, "conv2")
    methods["eigen-cam"] = normgrad.EigenCAM(model, "relu3")
    methods["score-cam"] = normgrad.ScoreCAM(model, "conv2", batch_size=7)
    methods["centre"] = normgrad.CenterMap()
    return methods


def _close(a: torch.Tensor | None, b: torch.Tensor | None, what: str) -> None:
    assert (a is None) == (b is None), what
    if a is None or b is None:
        return
    assert a.shape == b.shape and a.dtype == b.dtype, what
    scale = b.abs().max().clamp_min(1e-300)
    assert float((a - b).abs().max() / scale) <= 1e-10, what


TARGETS: dict[str, Callable[[], normgrad.Target]] = {
    "predicted": lambda: None,
    "per-sample": lambda: torch.tensor([3, 0, 1]),
    "callable": lambda: lambda out: out[:, 2] - out[:, 0],
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_method_shared_equals_each_alone(target: str) -> None:
    model = seeded(TinyCNN()).double()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    methods = every_method(model)
    shared = normgrad.explain_shared(list(methods.values()), x, TARGETS[target]())
    for (name, explainer), together in zip(methods.items(), shared):
        alone = explainer.explain(x, TARGETS[target]())
        _close(together.saliency, alone.saliency, f"{name}: saliency")
        _close(together.raw, alone.raw, f"{name}: raw")
        _close(together.attribution, alone.attribution, f"{name}: attribution")
        assert together.layer_maps.keys() == alone.layer_maps.keys(), name
        for layer in alone.layer_maps:
            _close(together.layer_maps[layer], alone.layer_maps[layer], f"{name}: {layer}")
            _close(together.raw_layer_maps[layer], alone.raw_layer_maps[layer], f"{name}: {layer}")
        if alone.classes is None:
            assert together.classes is None, name
        else:
            assert together.classes is not None and torch.equal(together.classes, alone.classes)


class Counting:
    """Counts the forward passes of a model and the guided ones among them."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[bool] = []
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: object, output: torch.Tensor) -> None:
        # a guided pass replaces relu by its guided version: probe it on a negative gradient
        probe = torch.tensor([1.0], requires_grad=True)
        (grad,) = torch.autograd.grad(torch.relu(probe), probe, torch.tensor([-1.0]))
        self.calls.append(bool(grad.item() == 0))

    def close(self) -> None:
        self.handle.remove()


def test_the_paper_protocol_takes_one_forward_pass() -> None:
    model = seeded(TinyCNN())
    x = torch.randn(2, 3, 16, 16)
    counter = Counting(model)
    try:
        normgrad.explain_shared(list(paper_methods(model).values()), x)
    finally:
        counter.close()
    assert counter.calls == [True]  # one forward, its ReLUs wrapped for the guided backward
    counter = Counting(model)
    try:
        without_guided = [e for e in paper_methods(model).values() if "Guided" not in repr(e)]
        normgrad.explain_shared(without_guided, x)
        normgrad.explain_shared([normgrad.GuidedBackprop(model)], x)
    finally:
        counter.close()
    assert counter.calls == [False, True]  # ReLUs wrapped only when a method is guided


def test_a_dict_of_explainers_is_refused_saying_how_to_pass_it() -> None:
    model = seeded(TinyCNN())
    with pytest.raises(normgrad.ArgumentTypeError, match=r"list\(explainers.values\(\)\)"):
        normgrad.explain_shared(paper_methods(model), torch.randn(1, 3, 16, 16))  # type: ignore[arg-type]


def test_the_guided_gradient_explains_the_classes_the_plain_one_chose() -> None:
    model = seeded(TinyCNN())
    x = torch.randn(4, 3, 16, 16)
    grad_cam, guided = normgrad.explain_shared(
        [normgrad.GradCAM(model, "relu3"), normgrad.GuidedBackprop(model)], x
    )
    assert grad_cam.classes is not None and guided.classes is not None
    assert torch.equal(grad_cam.classes, guided.classes)
    assert torch.equal(guided.classes, model(x).argmax(dim=1))


def test_explainers_of_two_models_are_grouped_by_model() -> None:
    first, second = seeded(TinyCNN(), 0), seeded(TinyCNN(), 1)
    x = torch.randn(2, 3, 16, 16)
    methods = [normgrad.NormGrad(first, "relu3"), normgrad.NormGrad(second, "relu3")]
    counters = [Counting(first), Counting(second)]
    try:
        shared = normgrad.explain_shared(methods, x, 1)
    finally:
        for c in counters:
            c.close()
    assert [len(c.calls) for c in counters] == [1, 1]
    for explainer, together in zip(methods, shared):
        assert torch.equal(explainer(x, 1), together.saliency)
    assert not torch.equal(shared[0].saliency, shared[1].saliency)


def test_explain_shared_checks_before_any_pass() -> None:
    model = seeded(TinyCNN())
    counter = Counting(model)
    try:
        with pytest.raises(normgrad.ArgumentTypeError, match=r"explainers\[1\]"):
            normgrad.explain_shared([normgrad.Gradient(model), "grad-cam"], torch.randn(1, 3, 8, 8))  # type: ignore[list-item]
        with pytest.raises(normgrad.ArgumentTypeError, match="target"):
            normgrad.explain_shared([normgrad.Gradient(model)], torch.randn(1, 3, 8, 8), "cat")  # type: ignore[arg-type]
        with pytest.raises(normgrad.ShapeError):  # a 1-D input: conv3x3 checked before the pass
            normgrad.explain_shared(
                [normgrad.Gradient(model), normgrad.NormGrad(model, "relu3", "conv3x3")],
                torch.randn(1, 3, 8),
            )
    finally:
        counter.close()
    assert counter.calls == []
    assert normgrad.explain_shared([], torch.randn(1, 3, 8, 8)) == []
