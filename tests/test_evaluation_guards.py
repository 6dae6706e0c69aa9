"""evaluate refuses what would make a study silently wrong: explainers of another model,
a resume or a rank whose explainers or weights differ, data whose order cannot be read."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import normgrad

from .models import TinyCNN, seeded

SIZE = 16


def _model(seed: int = 0) -> nn.Module:
    return seeded(TinyCNN(), seed).double()


def _data(batches: int = 2, batch: int = 3) -> list[tuple[torch.Tensor, torch.Tensor, Any]]:
    gen = torch.Generator().manual_seed(3)
    data = []
    for _ in range(batches):
        x = torch.randn(batch, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, 5, (batch,), generator=gen)
        boxes = [torch.tensor([[2, 2, 9, 9]])] * batch
        data.append((x, labels, boxes))
    return data


class _Counting:
    """Counts the model's forward passes."""

    def __init__(self, model: nn.Module) -> None:
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, args: Any) -> None:
        self.calls += 1


def test_explainers_of_another_model_are_refused_before_any_pass() -> None:
    trained, randomised = _model(0), _model(1)
    counting = _Counting(randomised)
    explainers = {
        "NormGrad": normgrad.NormGrad(randomised, "conv2"),
        "Grad-CAM": normgrad.GradCAM(trained, "relu3"),  # reused from the trained model
    }
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        normgrad.evaluate(randomised, explainers, _data(), progress=False)
    message = str(error.value)
    assert "explainers['Grad-CAM']" in message and "another model" in message
    assert "Build the explainers of the model you evaluate" in message
    assert counting.calls == 0
    wrapped = {"SmoothGrad": normgrad.SmoothGrad(normgrad.Gradient(trained), n_samples=2)}
    with pytest.raises(normgrad.InvalidArgumentError, match=r"explainers\['SmoothGrad'\]"):
        normgrad.evaluate(randomised, wrapped, _data(), progress=False)
    assert counting.calls == 0


def test_explainers_of_the_model_or_its_wrapper_and_the_centre_baseline_are_accepted() -> None:
    model = _model()
    other = _model(1)
    explainers = {
        "NormGrad": normgrad.NormGrad(model, "conv2"),
        "centre": normgrad.CenterBaseline(),
        "centre of another": normgrad.CenterBaseline(other),  # ignores its model
        "SmoothGrad": normgrad.SmoothGrad(normgrad.Gradient(model), n_samples=2),
    }
    result = normgrad.evaluate(model, explainers, _data(1), progress=False, baselines=False)
    assert result["NormGrad"].total == 3
    # a DataParallel wrapper runs the same module: its explainers are the model's
    parallel = nn.DataParallel(model)
    wrapped = normgrad.evaluate(parallel, {"g": normgrad.Gradient(model)}, _data(1), progress=False)
    assert wrapped["g"].total == 3
    inner = normgrad.evaluate(model, {"g": normgrad.Gradient(parallel)}, _data(1), progress=False)
    assert inner["g"].hits == wrapped["g"].hits
