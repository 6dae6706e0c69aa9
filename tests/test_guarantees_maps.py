"""Guarantees about maps and metrics: scale-free saliency, pointing rules, argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from normgrad import InvalidArgumentError, metrics
from normgrad import functional as nf

from .reference.maps import reference_normalize

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _exponents(dtype: torch.dtype) -> tuple[float, float]:
    """Decimal exponents of scales from 1e-30 to 1e30, within the dtype's normal range
    (with room for the map's own spread of values)."""
    info = torch.finfo(dtype)
    return max(-30.0, math.log10(info.tiny) + 2), min(30.0, math.log10(info.max) - 1)


@st.composite
def scaled_maps(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, float, torch.dtype]:
    dtype = draw(st.sampled_from(DTYPES))
    low, high = _exponents(dtype)
    exponent = draw(st.floats(low, high))
    shape = (draw(st.integers(1, 3)), 1, draw(st.integers(2, 6)), draw(st.integers(2, 6)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    base = torch.rand(shape, generator=gen, dtype=torch.float64)
    base.flatten(1)[:, 0] = 0.05  # two distinct values per sample: never constant
    base.flatten(1)[:, 1] = 0.95
    offset = draw(st.sampled_from([0.0, 0.5, -1.5]))  # signed maps too
    return base, (base + offset) * 10.0**exponent, 10.0**exponent, dtype


@given(scaled_maps())
def test_normalised_maps_span_zero_to_one_whatever_the_units(
    case: tuple[torch.Tensor, torch.Tensor, float, torch.dtype],
) -> None:
    base, scaled, _, dtype = case
    maps = scaled.to(dtype)
    normalised = nf.min_max_normalize(maps)
    assert normalised.dtype == dtype
    assert normalised.flatten(1).amax(dim=1).tolist() == [1.0] * maps.shape[0]
    assert normalised.flatten(1).amin(dim=1).tolist() == [0.0] * maps.shape[0]
    assert not bool(nf.is_constant(maps).any())
    eps = torch.finfo(dtype).eps
    expected = reference_normalize(maps.double())  # the same values, in float64
    torch.testing.assert_close(normalised.double(), expected, atol=8 * eps, rtol=0)
    # and the same map whatever its units, to the dtype's rounding
    torch.testing.assert_close(
        normalised.double(), reference_normalize(base), atol=16 * eps, rtol=0
    )


@given(scaled_maps())
def test_saliency_from_layer_maps_does_not_depend_on_units(
    case: tuple[torch.Tensor, torch.Tensor, float, torch.dtype],
) -> None:
    _, scaled, _, dtype = case
    raw = scaled.abs().to(dtype)  # raw maps are non-negative
    saliency, _, informative = nf.layer_maps_to_saliency([raw], (9, 7))
    assert all(bool(i.all()) for i in informative)
    assert saliency.flatten(1).amax(dim=1).tolist() == [1.0] * raw.shape[0]
    unit, _, _ = nf.layer_maps_to_saliency([raw.double()], (9, 7))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(saliency.double(), unit, atol=16 * eps, rtol=0)


@given(
    dtype=st.sampled_from(DTYPES),
    fraction=st.floats(0, 1),
    value=st.sampled_from([0.3, -7.0, 1.0]),
    data=st.data(),
)
def test_constant_maps_are_found_at_every_scale(
    dtype: torch.dtype, fraction: float, value: float, data: st.DataObject
) -> None:
    low, high = _exponents(dtype)
    scale = 10.0 ** (low + fraction * (high - low))
    constant = torch.full((2, 1, 3, 4), value * scale, dtype=torch.float64).to(dtype)
    assert nf.is_constant(constant).tolist() == [True, True]
    assert torch.equal(nf.min_max_normalize(constant), torch.zeros_like(constant))
    # rounding noise of a few ulps (up to 64, and 2**-7 of the value) is constant;
    # a spread of 5 % is not
    eps = torch.finfo(dtype).eps
    ulps = data.draw(st.integers(1, max(1, int(min(64, 2**-7 / eps)) - 1)))
    v = float(constant.flatten()[0])
    ulp = 2.0 ** math.floor(math.log2(abs(v))) * eps
    noisy = constant.clone()
    noisy.flatten()[0] = v - math.copysign(ulps * ulp, v)  # towards 0: representable exactly
    assert float(noisy.flatten()[0]) != v
    assert nf.is_constant(noisy).tolist() == [True, True]
    varied = constant.clone()
    varied.flatten()[0] = varied.flatten()[0] * 1.05
    assert nf.is_constant(varied).tolist() == [False, True]
    assert nf.is_constant(torch.zeros(1, 1, 2, 2, dtype=dtype)).tolist() == [True]


def test_pointing_on_the_target_is_a_hit_at_tolerance_zero() -> None:
    saliency = torch.zeros(2, 1, 10, 10)
    saliency[:, 0, 4, 6] = 1.0  # point (x=6, y=4)
    inside = [torch.tensor([[5, 3, 7, 5]])] * 2
    beside = [torch.tensor([[7, 4, 9, 4]])] * 2  # one pixel to the right
    assert metrics.pointing_game(saliency, inside, tolerance=0).tolist() == [1.0, 1.0]
    assert metrics.pointing_game(saliency, beside, tolerance=0).tolist() == [0.0, 0.0]
    masks = torch.zeros(2, 10, 10, dtype=torch.bool)
    masks[0, 4, 6] = True
    masks[1, 4, 7] = True
    assert metrics.pointing_game(saliency, masks, tolerance=0).tolist() == [1.0, 0.0]
    # TorchRay's strict boundary holds for tolerance > 0: one pixel away at tolerance 1
    assert metrics.pointing_game(saliency, beside, tolerance=1).tolist() == [0.0, 0.0]
    # the random point hits when it lands on the box: 3 x 3 pixels of 100
    rate = metrics.random_point_hit_rate(inside[:1], (10, 10), tolerance=0)
    assert rate.tolist() == [0.09]


def test_accumulator_counts_constant_maps_as_misses() -> None:
    game = metrics.PointingGame(tolerance=15)
    saliency = torch.zeros(2, 1, 16, 16)
    saliency[1, 0, 2, 2] = 1.0
    corner = [torch.tensor([[0, 0, 3, 3]])] * 2
    assert metrics.points(saliency).tolist() == [[-1, -1], [2, 2]]
    assert game.update(saliency, corner).tolist() == [0.0, 1.0]
    assert (game.hits, game.total) == (1, 2)


def test_dom_arguments_are_named() -> None:
    with pytest.raises(InvalidArgumentError, match=r"confidence: expected a number in \(0, 1\)"):
        metrics.dom([0.5, 0.6], [0.4, 0.5], confidence=1.5)
    with pytest.raises(InvalidArgumentError, match="bootstrap: expected an int >= 0, got -1"):
        metrics.dom([0.5, 0.6], [0.4, 0.5], bootstrap=-1)
    with pytest.raises(InvalidArgumentError, match="permutations: expected an int >= 0, got -5"):
        metrics.dom([0.5, 0.6], [0.4, 0.5], permutations=-5)
    with pytest.raises(InvalidArgumentError, match="confidence"):
        metrics.wilson_interval(3, 4, confidence=0)
    result = metrics.dom([0.5, 0.6], [0.4, 0.5], permutations=0, bootstrap=None)
    assert math.isnan(result.p_value) and math.isnan(result.low)
