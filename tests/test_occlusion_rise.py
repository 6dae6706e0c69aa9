"""Occlusion and RISE: the literal references (one window or mask at a time), Captum's
Occlusion, the masks of an image drawn from that image alone, and the guarantees every
explainer keeps."""

from __future__ import annotations

import copy

import captum.attr as ca
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import normgrad
from normgrad import InvalidArgumentError, ShapeError

from .conftest import examples, requires_cuda
from .dispatch_count import count
from .example_modules import load
from .lifecycle import assert_unchanged, snapshot
from .models import TinyCNN, TinyCNN3d, seeded
from .reference.perturbation import (
    logit_score,
    probability_score,
    reference_occlusion,
    reference_rise,
    reference_rise_mask,
)

MODEL2 = seeded(TinyCNN()).double().eval()
MODEL3 = seeded(TinyCNN3d()).double().eval()


def _model(ndim: int) -> nn.Module:
    return MODEL2 if ndim == 2 else MODEL3


def _x(n: int, spatial: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    channels = 3 if len(spatial) == 2 else 2
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *spatial, generator=gen, dtype=torch.float64)


@st.composite
def occlusion_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], list[int], list[int]]:
    ndim = draw(st.sampled_from([2, 3]))
    spatial = tuple(draw(st.integers(3, 7 if ndim == 2 else 4)) for _ in range(ndim))
    window = [draw(st.integers(1, s)) for s in spatial]
    # a stride beyond the window only where the window spans the axis (else a gap)
    stride = [draw(st.integers(1, w + 2 if w == s else w)) for s, w in zip(spatial, window)]
    return spatial, window, stride


@given(
    case=occlusion_cases(),
    n=st.integers(1, 3),
    batch_size=st.integers(1, 7),
    baseline=st.floats(-2, 2),
    seed=st.integers(0, 99),
)
@examples(30)
def test_occlusion_equals_the_literal_reference(
    case: tuple[tuple[int, ...], list[int], list[int]],
    n: int,
    batch_size: int,
    baseline: float,
    seed: int,
) -> None:
    spatial, window, stride = case
    model = _model(len(spatial))
    x = _x(n, spatial, seed)
    target = torch.arange(n) % 3
    occlusion = normgrad.Occlusion(model, window, stride, baseline, batch_size)
    result = occlusion.explain(x, target)
    assert result.raw is not None and result.raw.shape == (n, 1, *spatial)
    for i in range(n):
        expected = reference_occlusion(
            logit_score(model, int(target[i])), x[i], window, stride, baseline
        )
        torch.testing.assert_close(result.raw[i, 0], expected, rtol=1e-9, atol=1e-12)


@given(
    ndim=st.sampled_from([2, 3]),
    data=st.data(),
    n=st.integers(1, 3),
    n_masks=st.integers(1, 9),
    batch_size=st.integers(1, 9),
    p=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**40),
)
@examples(25)
def test_rise_equals_the_literal_reference(
    ndim: int, data: st.DataObject, n: int, n_masks: int, batch_size: int, p: float, seed: int
) -> None:
    high = 8 if ndim == 2 else 4
    spatial = tuple(data.draw(st.integers(2, high)) for _ in range(ndim))
    cell = [data.draw(st.integers(1, 4)) for _ in range(ndim)]
    model = _model(ndim)
    x = _x(n, spatial, seed % 1000)
    target = (torch.arange(n) + 1) % 3
    rise = normgrad.RISE(model, n_masks, cell, p, batch_size, seed)
    result = rise.explain(x, target)
    grids, shifts = rise._draws(x)
    assert result.raw is not None and result.raw.shape == (n, 1, *spatial)
    for i in range(n):
        expected = reference_rise(
            probability_score(model, int(target[i])), x[i], grids[i], shifts[i], cell, p
        )
        torch.testing.assert_close(result.raw[i, 0], expected, rtol=1e-9, atol=1e-12)


@given(
    size=st.integers(1, 12),
    cell=st.integers(1, 6),
    n_masks=st.integers(1, 6),
    seed=st.integers(0, 2**40),
)
@examples(20)
def test_rise_draws_binary_grids_and_shifts_within_a_cell(
    size: int, cell: int, n_masks: int, seed: int
) -> None:
    x = _x(2, (size, size + 1), seed % 1000)
    rise = normgrad.RISE(MODEL2, n_masks, cell, 0.5, seed=seed)
    grids, shifts = rise._draws(x)
    cells = -(-size // cell) + 1, -(-(size + 1) // cell) + 1
    assert grids.shape == (2, n_masks, *cells)
    assert set(grids.unique().tolist()) <= {0.0, 1.0}
    assert shifts.shape == (2, n_masks, 2) and shifts.min() >= 0 and shifts.max() < cell
    # each mask reads the upsampled grid from its shift on: never beyond it
    for grid, shift in zip(grids[0], shifts[0]):
        mask = reference_rise_mask(grid, shift.tolist(), [cell, cell], (size, size + 1))
        assert mask.shape == (size, size + 1)
        assert mask.min() >= 0 and mask.max() <= 1


def test_rise_keeps_a_cell_with_probability_p() -> None:
    x = _x(1, (32, 32))
    for p in (0.1, 0.5, 0.8):
        grids, _ = normgrad.RISE(MODEL2, 2000, 8, p)._draws(x)
        kept = float(grids.mean())  # 50,000 cells: a standard error below 0.0025
        assert abs(kept - p) < 0.01, (p, kept)


# ---------------------------------------------------------------------------------------
# Captum's Occlusion, the oracle


def _captum_occlusion(
    model: nn.Module,
    x: torch.Tensor,
    window: tuple[int, ...],
    stride: tuple[int, ...],
    target: torch.Tensor,
    baseline: float | torch.Tensor,
) -> torch.Tensor:
    channels = x.shape[1]
    attribution = ca.Occlusion(copy.deepcopy(model).eval()).attribute(
        x.clone(),
        sliding_window_shapes=(channels, *window),
        strides=(channels, *stride),
        target=target,
        baselines=baseline,
        perturbations_per_eval=4,
    )
    # one value per pixel, the same in every channel: the windows cover them all
    torch.testing.assert_close(attribution, attribution[:, :1].expand_as(attribution))
    return attribution[:, :1].double()


@pytest.mark.parametrize(
    ("window", "stride"),
    [((8, 8), (8, 8)), ((10, 6), (7, 4)), ((5, 5), (3, 3))],  # (10, 6), (7, 4): cut off
)
def test_occlusion_equals_captum_on_resnet18(
    window: tuple[int, ...], stride: tuple[int, ...]
) -> None:
    model = seeded(torchvision.models.resnet18(num_classes=3)).double().eval()
    x = _x(2, (32, 30), seed=1)
    target = torch.tensor([2, 0])
    ours = normgrad.Occlusion(model, window, stride, batch_size=16).explain(x, target)
    theirs = _captum_occlusion(model, x, window, stride, target, 0.0)
    assert ours.raw is not None
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours.raw, theirs, rtol=1e-5, atol=1e-5 * scale)
    assert ours.classes is not None and ours.classes.tolist() == [2, 0]


def test_occlusion_equals_captum_with_a_tensor_baseline_and_volumes() -> None:
    baseline = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64).view(1, 3, 1, 1)
    x = _x(3, (11, 13), seed=2)
    target = torch.tensor([1, 4, 0])
    ours = normgrad.Occlusion(MODEL2, (4, 5), (3, 2), baseline, batch_size=7).explain(x, target)
    theirs = _captum_occlusion(MODEL2, x, (4, 5), (3, 2), target, baseline)
    assert ours.raw is not None
    torch.testing.assert_close(ours.raw, theirs, rtol=1e-5, atol=1e-7)
    volume = _x(2, (5, 6, 4), seed=3)
    target = torch.tensor([2, 1])
    ours = normgrad.Occlusion(MODEL3, (2, 3, 4), (2, 2, 1), -0.5).explain(volume, target)
    theirs = _captum_occlusion(MODEL3, volume, (2, 3, 4), (2, 2, 1), target, -0.5)
    assert ours.raw is not None
    torch.testing.assert_close(ours.raw, theirs, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------
# batches, devices, targets


def test_rise_map_of_an_image_does_not_depend_on_the_other_images() -> None:
    x = _x(4, (12, 12), seed=4)
    target = torch.tensor([0, 1, 2, 3])
    rise = normgrad.RISE(MODEL2, n_masks=12, cell_size=4, batch_size=5, seed=3)
    batch = rise.explain(x, target)
    assert batch.raw is not None
    order = [2, 0, 3, 1]
    shuffled = rise.explain(x[order], target[order])
    other = normgrad.RISE(MODEL2, n_masks=12, cell_size=4, batch_size=64, seed=3)
    for i in range(4):
        alone = rise.explain(x[i : i + 1], int(target[i])).raw
        assert alone is not None and shuffled.raw is not None
        torch.testing.assert_close(batch.raw[i : i + 1], alone, rtol=1e-12, atol=1e-14)
        j = order.index(i)
        torch.testing.assert_close(shuffled.raw[j : j + 1], alone, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(other.explain(x, target).raw, batch.raw, rtol=1e-12, atol=1e-14)
    # the masks follow the image: two equal images, equal maps; another seed, other masks
    twins = rise.explain(torch.cat([x[:1], x[:1]]), 0).raw
    assert twins is not None and torch.equal(twins[0], twins[1])
    reseeded = normgrad.RISE(MODEL2, n_masks=12, cell_size=4, seed=4).explain(x, target).raw
    assert reseeded is not None and not torch.allclose(reseeded, batch.raw)


def test_occlusion_batch_size_and_batch_change_nothing() -> None:
    x = _x(3, (10, 9), seed=5)
    target = torch.tensor([3, 1, 0])
    one = normgrad.Occlusion(MODEL2, 4, 3, batch_size=1).explain(x, target).raw
    many = normgrad.Occlusion(MODEL2, 4, 3, batch_size=100).explain(x, target).raw
    assert one is not None and many is not None
    torch.testing.assert_close(one, many, rtol=1e-12, atol=1e-14)
    alone = normgrad.Occlusion(MODEL2, 4, 3).explain(x[1:2], 1).raw
    assert alone is not None
    torch.testing.assert_close(many[1:2], alone, rtol=1e-12, atol=1e-14)


def test_predicted_class_and_callable_targets() -> None:
    x = _x(2, (9, 9), seed=6)
    with torch.no_grad():
        logits = MODEL2(x)
    predicted = logits.argmax(dim=1)
    for explainer in (normgrad.Occlusion(MODEL2, 3, 3), normgrad.RISE(MODEL2, 6, 3)):
        by_none = explainer.explain(x)
        by_classes = explainer.explain(x, predicted)
        assert by_none.classes is not None and by_none.classes.tolist() == predicted.tolist()
        torch.testing.assert_close(by_none.raw, by_classes.raw, rtol=0, atol=0)
    # a callable is scored as it is: the logit for Occlusion, its own score for RISE
    occlusion = normgrad.Occlusion(MODEL2, 3, 2, batch_size=4)
    by_callable = occlusion.explain(x, lambda o: o[torch.arange(2), predicted])
    assert by_callable.classes is None
    torch.testing.assert_close(by_callable.raw, occlusion.explain(x, predicted).raw)
    rise = normgrad.RISE(MODEL2, 6, 3, batch_size=4)
    probability = rise.explain(x, lambda o: o.softmax(dim=1)[torch.arange(2), predicted])
    torch.testing.assert_close(probability.raw, rise.explain(x, predicted).raw)


def test_single_logit_rise_weighs_by_the_sigmoid() -> None:
    model = seeded(TinyCNN(num_classes=1)).double().eval()
    x = _x(2, (8, 8), seed=7)
    rise = normgrad.RISE(model, 5, 3)
    for cls, sign in ((1, 1.0), (0, -1.0)):
        expected = rise.explain(x, lambda o, s=sign: torch.sigmoid(s * o[:, 0])).raw
        torch.testing.assert_close(rise.explain(x, cls).raw, expected)


def test_explain_shared_and_evaluate_run_both() -> None:
    x = _x(2, (12, 12), seed=8)
    target = torch.tensor([1, 2])
    methods = [
        normgrad.NormGrad(MODEL2, "conv3"),
        normgrad.Occlusion(MODEL2, 4, 4),
        normgrad.RISE(MODEL2, 8, 4),
    ]
    shared = normgrad.explain_shared(methods, x, target)
    for method, result in zip(methods, shared):
        torch.testing.assert_close(result.saliency, method.explain(x, target).saliency)
    boxes = [torch.tensor([[2, 2, 6, 6]]), torch.tensor([[5, 5, 11, 11]])]
    data = [(x, target, boxes)]
    result = normgrad.evaluate(
        MODEL2,
        {"Occlusion": methods[1], "RISE": methods[2]},
        data,
        tolerance=2.0,
        reference_rows=False,
        progress=False,
    )
    assert {row.method for row in result.rows} == {"Occlusion", "RISE"}


def test_channels_last_and_the_model_left_as_it_was() -> None:
    model = seeded(TinyCNN()).double().train()
    x = _x(2, (10, 10), seed=9)
    before = snapshot(model, x)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    for explainer in (normgrad.Occlusion(model, 4, 2), normgrad.RISE(model, 6, 4)):
        plain, other = explainer.explain(x, 1), explainer.explain(nhwc, 1)
        torch.testing.assert_close(other.raw, plain.raw, rtol=1e-9, atol=1e-12)
        with pytest.raises(normgrad.NormGradError):
            explainer(x, 9)
        assert_unchanged(before, snapshot(model, x))
    assert model.training


@pytest.mark.parametrize("name", ["Occlusion", "RISE"])
def test_one_read_of_the_device_per_call(name: str) -> None:
    """Occlusion reads the device once (the call's checks); RISE once more, its images'
    seeds (a generator's seed is a host integer), as SmoothGrad."""
    model = seeded(TinyCNN()).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    explainer = (
        normgrad.Occlusion(model, 4, 4, batch_size=8)
        if name == "Occlusion"
        else normgrad.RISE(model, 24, 4, batch_size=8)
    )
    for target in (1, None, torch.tensor([0, 2])):
        counts = count(lambda t=target: explainer(x, t))
        assert counts.sync_count <= (1 if name == "Occlusion" else 2), dict(counts.syncs)


@requires_cuda
def test_cuda_maps_follow_the_input() -> None:
    model = seeded(TinyCNN()).double().eval()
    x = _x(3, (12, 12), seed=10)
    target = torch.tensor([0, 1, 2])
    cpu = normgrad.Occlusion(model, 4, 3).explain(x, target).raw
    cuda = normgrad.Occlusion(model.cuda(), 4, 3).explain(x.cuda(), target.cuda()).raw
    assert cuda is not None and cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-9, atol=1e-12)
    rise = normgrad.RISE(model, 16, 4, batch_size=7)
    batch = rise.explain(x.cuda(), target.cuda()).raw
    alone = rise.explain(x[1:2].cuda(), 1).raw
    assert batch is not None and alone is not None and batch.device.type == "cuda"
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-9, atol=1e-12)
    grids, shifts = rise._draws(x[:1].cuda())  # the CUDA generator's masks
    ours = rise.explain(x[:1].cuda(), 0).raw
    assert ours is not None
    expected = reference_rise(
        probability_score(model.cpu(), 0), x[0], grids[0].cpu(), shifts[0].cpu(), [4, 4], 0.5
    )
    torch.testing.assert_close(ours[0, 0].cpu(), expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------
# arguments


def test_arguments_are_checked() -> None:
    x = _x(1, (8, 8))
    with pytest.raises(ShapeError, match=r"window: expected at most the input's size \(8, 8\)"):
        normgrad.Occlusion(MODEL2, (9, 2))(x)
    with pytest.raises(InvalidArgumentError, match="stride: expected at most the window"):
        normgrad.Occlusion(MODEL2, 3, 4)(x)
    with pytest.raises(ShapeError, match=r"window: expected one size or 2"):
        normgrad.Occlusion(MODEL2, (2, 2, 2))(x)
    with pytest.raises(normgrad.ArgumentTypeError, match="window: expected a positive int"):
        normgrad.Occlusion(MODEL2, 2.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="stride: expected a positive int"):
        normgrad.Occlusion(MODEL2, 2, 0)
    with pytest.raises(InvalidArgumentError, match="baseline: expected a finite number"):
        normgrad.Occlusion(MODEL2, 2, baseline=float("nan"))
    with pytest.raises(ShapeError, match="baseline: expected a tensor broadcastable"):
        normgrad.Occlusion(MODEL2, 2, baseline=torch.zeros(5, 1, 1))(x)
    with pytest.raises(InvalidArgumentError, match=r"p: expected a number in \(0, 1\]"):
        normgrad.RISE(MODEL2, p=0.0)
    with pytest.raises(InvalidArgumentError, match="n_masks: expected a positive int"):
        normgrad.RISE(MODEL2, n_masks=0)
    with pytest.raises(normgrad.ArgumentTypeError, match="seed: expected an int >= 0"):
        normgrad.RISE(MODEL2, seed="a")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="cell_size: expected one size or 2"):
        normgrad.RISE(MODEL2, cell_size=(2, 2, 2))(x)
    # a window as large as the input is one position, with any stride
    whole = normgrad.Occlusion(MODEL2, 8, 20).explain(x, 0)
    assert whole.raw is not None and bool((whole.raw == whole.raw[0, 0, 0, 0]).all())


def test_the_protocol_gains_them_by_name() -> None:
    protocol = load("protocol")
    config = protocol.parse(["--quick", "--extra", "Occlusion", "RISE"])
    assert tuple(config.extra) == ("Occlusion", "RISE")
    model = torchvision.models.resnet18(num_classes=2)
    methods = protocol.explainers_for(model, "resnet18", config.extra)
    paper = normgrad.presets.paper_methods(model, "resnet18")
    assert list(methods) == [*paper, "Occlusion", "RISE"]
    assert isinstance(methods["Occlusion"], normgrad.Occlusion)
    assert isinstance(methods["RISE"], normgrad.RISE) and methods["RISE"].model is model
    assert list(protocol.explainers_for(model, "resnet18")) == list(paper)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_inputs_give_float32_maps(dtype: torch.dtype) -> None:
    # the 16-bit model's weights, exact in float64: the reference runs them in float64
    low = copy.deepcopy(MODEL2).to(dtype)
    wide = copy.deepcopy(low).double()
    x = _x(2, (6, 7), seed=6).to(dtype)
    target = torch.tensor([1, 2])
    rise = normgrad.RISE(low, n_masks=8, cell_size=3, seed=1)
    grids, shifts = rise._draws(x)
    for explainer in (normgrad.Occlusion(low, 3, 2), rise):
        result = explainer.explain(x, target)
        assert result.raw is not None
        assert result.saliency.dtype == result.raw.dtype == torch.float32
        for i in range(2):
            if explainer is rise:
                score = probability_score(wide, int(target[i]))
                expected = reference_rise(score, x[i], grids[i], shifts[i], [3, 3], 0.5)
            else:
                score = logit_score(wide, int(target[i]))
                expected = reference_occlusion(score, x[i], [3, 3], [2, 2], 0.0)
            scale = float(expected.abs().max())  # 16-bit scores: about 3 digits
            torch.testing.assert_close(
                result.raw[i, 0].double(), expected, rtol=0, atol=0.05 * scale
            )
