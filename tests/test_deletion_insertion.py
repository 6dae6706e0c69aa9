"""Deletion and insertion against a pixel-by-pixel reference and TorchCAM's implementation."""

from __future__ import annotations

import contextlib
import copy
import math
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage
from torch import nn

from normgrad import ArgumentTypeError, InvalidArgumentError, ShapeError, metrics

from .conftest import examples
from .reference.deletion import reference_baseline, reference_curves


def small_model(outputs: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, outputs),
    )
    with torch.no_grad():  # make batch norm's statistics matter
        bn = model[1]
        assert isinstance(bn, nn.BatchNorm2d)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model


@st.composite
def cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int, str, int]:
    n = draw(st.integers(1, 3))
    height, width = draw(st.integers(6, 8)), draw(st.integers(6, 8))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, height, width, generator=g)
    levels = draw(st.integers(1, 4))  # ties
    saliency = torch.randint(0, levels + 1, (n, height, width), generator=g).float()
    steps = draw(st.integers(1, 12))
    baseline = draw(st.sampled_from(["zeros", "mean", "blur"]))
    batch_size = draw(st.integers(1, 7))
    return x, saliency, steps, baseline, batch_size


@given(cases(), st.booleans())
@examples(40)
def test_matches_pixel_by_pixel_reference(
    case: tuple[torch.Tensor, torch.Tensor, int, str, int], fixed_target: bool
) -> None:
    x, saliency, steps, baseline, batch_size = case
    model = small_model().eval()
    target = 1 if fixed_target else None
    result = metrics.deletion_insertion(
        model,
        x,
        saliency[:, None],
        steps=steps,
        baseline=baseline,  # type: ignore[arg-type]
        target=target,
        batch_size=batch_size,
    )
    pixels = x.shape[2] * x.shape[3]
    counts = [math.floor(i * pixels / steps) for i in range(steps + 1)]
    assert result.fractions.tolist() == [c / pixels for c in counts]
    base = reference_baseline(x, baseline)
    for i in range(x.shape[0]):
        deletion, insertion, d_auc, i_auc, cls = reference_curves(
            model, x[i], saliency[i], counts, base[i], target
        )
        assert int(result.classes[i]) == cls
        assert result.deletion[i].tolist() == pytest.approx(deletion, abs=1e-5)
        assert result.insertion[i].tolist() == pytest.approx(insertion, abs=1e-5)
        assert float(result.deletion_auc[i]) == pytest.approx(d_auc, abs=1e-5)
        assert float(result.insertion_auc[i]) == pytest.approx(i_auc, abs=1e-5)


def test_single_logit_is_two_classes_with_logits_zero_and_z() -> None:
    model = small_model(outputs=1)
    torch.manual_seed(1)
    x, saliency = torch.rand(4, 2, 6, 6), torch.rand(4, 6, 6)
    result = metrics.deletion_insertion(model, x, saliency, steps=3)
    with torch.no_grad():
        z = model.eval()(x)[:, 0]
    model.train()
    predicted = (z > 0).long()
    assert torch.equal(result.classes, predicted)
    p1 = torch.sigmoid(z)
    expected = torch.where(predicted == 1, p1, 1 - p1)
    assert torch.allclose(result.deletion[:, 0], expected, atol=1e-6)
    assert torch.allclose(result.insertion[:, -1], expected, atol=1e-6)
    for i in range(4):
        deletion, *_ = reference_curves(
            model.eval(), x[i], saliency[i], [0, 12, 24, 36], torch.zeros_like(x[i]), None
        )
        assert result.deletion[i].tolist() == pytest.approx(deletion, abs=1e-5)


def test_model_is_left_as_it_was() -> None:
    model = small_model()
    model.train()
    model[1].eval()  # a mixed state must come back as it was
    before = copy.deepcopy(model.state_dict())
    flags = [m.training for m in model.modules()]
    x, saliency = torch.rand(3, 2, 6, 6), torch.rand(3, 6, 6)
    x_before = x.clone()
    with torch.inference_mode():
        metrics.deletion_insertion(model, x, saliency, steps=4, batch_size=2)
    metrics.deletion_insertion(model, x, saliency, steps=4, batch_size=5)
    assert [m.training for m in model.modules()] == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch norm stats included
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before)


def test_batch_size_does_not_change_the_result() -> None:
    model = small_model()
    torch.manual_seed(3)
    x, saliency = torch.rand(3, 2, 7, 6), torch.rand(3, 1, 7, 6)
    one = metrics.deletion_insertion(model, x, saliency, steps=5, batch_size=1)
    many = metrics.deletion_insertion(model, x, saliency, steps=5, batch_size=64)
    assert torch.allclose(one.deletion, many.deletion, atol=1e-6)
    assert torch.allclose(one.insertion_auc, many.insertion_auc, atol=1e-6)


def test_volumes() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 2 * 3 * 3, 2))
    x, saliency = torch.rand(2, 1, 2, 3, 3), torch.rand(2, 2, 3, 3)
    result = metrics.deletion_insertion(model, x, saliency, steps=18)
    # one voxel per step, removed in decreasing saliency: check the step that removes voxel 0
    order = saliency.reshape(2, -1).argsort(dim=1, descending=True, stable=True)
    with torch.no_grad():
        for i in range(2):
            probe = x[i : i + 1].clone().reshape(1, 1, -1)
            probe[..., order[i, :5]] = 0
            p = model(probe.reshape(1, 1, 2, 3, 3)).softmax(1)[0, result.classes[i]]
            assert float(result.deletion[i, 5]) == pytest.approx(float(p), abs=1e-6)


# ---------------------------------------------------------------------------------------
# TorchCAM's DeletionInsertionMetric as an oracle


class FixedMaps:
    """A CAM extractor for TorchCAM that returns given maps (at the input's size)."""

    def __init__(self, model: nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(
        self, class_idx: object = None, scores: object = None, **kwargs: object
    ) -> list[torch.Tensor]:
        return [self.maps]

    def fuse_cams(self, cams: list[torch.Tensor]) -> torch.Tensor:
        return cams[0]

    def _hooks_off(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def torchcam_aucs(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, steps: int, baseline: object = None
) -> dict[str, float]:
    torchcam = pytest.importorskip("torchcam.metrics")
    metric = torchcam.DeletionInsertionMetric(
        FixedMaps(model, maps),  # type: ignore[arg-type]
        partial(torch.softmax, dim=-1),
        steps=steps,
        baseline=baseline,  # type: ignore[arg-type]
        batch_size=7,
    )
    metric.update(x)
    summary: dict[str, float] = metric.summary()
    return summary


@pytest.mark.parametrize("steps", [1, 4, 16, 64])
def test_agrees_with_torchcam_when_steps_divide_the_pixels(steps: int) -> None:
    model = small_model()
    g = torch.Generator().manual_seed(steps)
    x = torch.rand(3, 2, 8, 8, generator=g)
    maps = torch.randint(0, 4, (3, 8, 8), generator=g).float()  # ties: row-major in both
    ours = metrics.deletion_insertion(model, x, maps, steps=steps)
    theirs = torchcam_aucs(model, x, maps, steps)
    assert float(ours.deletion_auc.mean()) == pytest.approx(theirs["deletion_auc"], abs=1e-6)
    assert float(ours.insertion_auc.mean()) == pytest.approx(theirs["insertion_auc"], abs=1e-6)
    blur = metrics.deletion_insertion(model, x, maps, steps=steps, baseline="blur")
    blur_base = torch.from_numpy(reference_baseline(x, "blur").numpy())
    theirs = torchcam_aucs(model, x, maps, steps, baseline=blur_base)
    assert float(blur.insertion_auc.mean()) == pytest.approx(theirs["insertion_auc"], abs=1e-5)


def test_differs_from_torchcam_where_documented() -> None:
    torch.manual_seed(7)
    model = nn.Sequential(nn.Flatten(), nn.Linear(98, 3))  # every pixel moves the logits
    nn.init.normal_(model[1].weight, std=1.0)
    g = torch.Generator().manual_seed(7)
    x, maps = torch.rand(2, 2, 7, 7, generator=g), torch.rand(2, 7, 7, generator=g)
    # 1. steps that do not divide the 49 pixels: TorchCAM takes ceil(49/10) = 5 pixels per
    #    step (0, 5, ..., 45, 49: a short last step), normgrad floor(i * 49 / 10)
    ours = metrics.deletion_insertion(model, x, maps, steps=10)
    assert ours.fractions.mul(49).round().tolist() == [0, 4, 9, 14, 19, 24, 29, 34, 39, 44, 49]
    theirs = torchcam_aucs(model, x, maps, 10)
    torchcam_counts = [*range(0, 49, 5), 49]
    expected = []
    for i in range(2):
        _, _, _, i_auc, _ = reference_curves(
            model.eval(), x[i], maps[i], torchcam_counts, torch.zeros_like(x[i]), None
        )
        expected.append(i_auc)
    model.train()
    assert theirs["insertion_auc"] == pytest.approx(sum(expected) / 2, abs=1e-6)
    assert abs(theirs["insertion_auc"] - float(ours.insertion_auc.mean())) > 1e-4
    # 2. one logit: TorchCAM's softmax over one value is 1 everywhere; normgrad: sigmoid
    single = small_model(outputs=1)
    theirs = torchcam_aucs(single, x, maps, 7)
    assert theirs["deletion_auc"] == pytest.approx(1.0)
    ours = metrics.deletion_insertion(single, x, maps, steps=7)
    assert float(ours.deletion_auc.max()) < 0.999
    # 3. maps not at the input's size: TorchCAM resizes them bilinearly, normgrad refuses
    with pytest.raises(ShapeError, match="saliency: expected maps of the input's batch and size"):
        metrics.deletion_insertion(model, x, maps[:, :4, :4], steps=4)


def test_errors() -> None:
    model = small_model()
    x, maps = torch.rand(2, 2, 6, 6), torch.rand(2, 6, 6)
    with pytest.raises(InvalidArgumentError, match="steps: expected a positive int, got 0"):
        metrics.deletion_insertion(model, x, maps, steps=0)
    with pytest.raises(InvalidArgumentError, match="steps: expected at most the 36 pixels"):
        metrics.deletion_insertion(model, x, maps, steps=37)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        metrics.deletion_insertion(model, x, maps, batch_size=0)
    with pytest.raises(InvalidArgumentError, match="baseline: expected 'zeros', 'blur', 'mean'"):
        metrics.deletion_insertion(model, x, maps, baseline="noise")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="baseline: expected 'zeros', 'blur', 'mean'"):
        metrics.deletion_insertion(model, x, maps, baseline=0)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="baseline: expected a tensor broadcastable to the"):
        metrics.deletion_insertion(model, x, maps, baseline=torch.zeros(3, 6, 6))
    with pytest.raises(InvalidArgumentError, match="baseline: expected a finite baseline tensor"):
        metrics.deletion_insertion(model, x, maps, baseline=torch.full((1, 6, 6), math.nan))
    # the target is read as the explainers read it (one rule, one wording)
    with pytest.raises(InvalidArgumentError, match=r"target: expected class indices in \[0, 3\)"):
        metrics.deletion_insertion(model, x, maps, target=[0, 3])
    with pytest.raises(ArgumentTypeError, match="target: expected an integer tensor of class"):
        metrics.deletion_insertion(model, x, maps, target=torch.tensor([0.5, 1.0]))
    bad = maps.clone()
    bad[0, 0, 0] = math.nan
    with pytest.raises(InvalidArgumentError, match="saliency: expected finite maps"):
        metrics.deletion_insertion(model, x, bad)
    bad_x = x.clone()
    bad_x[1, 0, 2, 3] = math.inf
    with pytest.raises(InvalidArgumentError, match=r"x: expected finite values, got 1 NaN"):
        metrics.deletion_insertion(model, bad_x, maps)
    # read once at the end, the input's check still comes first, as it did when eager
    for other in [{"steps": 37}, {"saliency": maps[:, :5]}, {"target": lambda out: out[:, 0]}]:
        call: dict[str, Any] = {"saliency": maps, **other}
        with pytest.raises(InvalidArgumentError, match=r"x: expected finite values"):
            metrics.deletion_insertion(model, bad_x, **call)
    with pytest.raises(ArgumentTypeError, match=r"model: expected a torch\.nn\.Module"):
        metrics.deletion_insertion(lambda t: t, x, maps)  # type: ignore[arg-type]


def test_the_blur_baseline_is_the_kernel_the_docs_name() -> None:
    # a delta blurred: the 2-D kernel itself. 11 taps of a sampled Gaussian of sigma 5,
    # normalised: the corner weight is e^-1 of the centre, nothing beyond 5 pixels
    from normgrad.metrics._deletion import _baseline

    x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    x[0, 0, 10, 10] = 1.0
    kernel = _baseline(x, "blur")[0, 0]
    taps = torch.exp(-(torch.arange(-5.0, 6.0, dtype=torch.float64) ** 2) / 50)
    taps /= taps.sum()
    assert torch.allclose(kernel[5:16, 5:16], taps[:, None] * taps[None, :], rtol=1e-12)
    assert float(kernel[5, 5] / kernel[10, 10]) == pytest.approx(math.exp(-1), rel=1e-12)
    assert float(kernel.sum()) == pytest.approx(1.0, rel=1e-12)
    assert not bool(kernel[:5].any()) and not bool(kernel[16:].any())
    # not RISE's gkern(11, 5), which is far flatter
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    gkern = ndimage.gaussian_filter(delta, 5)
    assert gkern[0, 0] / gkern[5, 5] == pytest.approx(0.876, abs=1e-3)
    # reflection without repeating the edge pixel (scipy's "mirror"): a delta at the edge
    x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    x[0, 0, 0, 10] = 1.0
    edge = _baseline(x, "blur")[0, 0]
    expected = ndimage.convolve(
        x[0, 0].numpy(), (taps[:, None] * taps[None, :]).numpy(), mode="mirror"
    )
    assert np.allclose(edge.numpy(), expected, rtol=1e-12, atol=1e-15)
