"""Map similarity (Spearman, Spearman of absolute values, SSIM) against literal references
(``tests/reference/similarity.py``) and scikit-image's SSIM, 2-D and 3-D, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from normgrad import metrics
from normgrad._errors import NormGradError

from .conftest import examples
from .reference import localization as loc
from .reference import similarity as ref


def _pair(seed: int, shape: tuple[int, ...], ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    b = a + torch.randn(2, *shape, generator=g, dtype=torch.float64)
    if ties:
        a, b = a.round(), b.round()
    return a, b


@given(st.integers(0, 2**16), st.sampled_from([(4, 5), (3, 3, 4)]), st.booleans())
@examples(25)
def test_spearman_measures_match_the_reference(
    seed: int, shape: tuple[int, ...], ties: bool
) -> None:
    a, b = _pair(seed, shape, ties)
    b[1] = 2.0  # a constant map
    got = metrics.map_similarity(a, b, "spearman").tolist()
    got_abs = metrics.map_similarity(a, b, "spearman_abs").tolist()
    for i in range(2):
        for value, expected in (
            (got[i], ref.spearman(a[i], b[i])),
            (got_abs[i], ref.spearman(a[i].abs(), b[i].abs())),
        ):
            assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(
                expected, abs=1e-12
            )


@given(st.integers(0, 2**16), st.sampled_from([(11, 11), (16, 19)]), st.booleans())
@examples(8)
def test_ssim_matches_the_reference(seed: int, shape: tuple[int, ...], ties: bool) -> None:
    a, b = _pair(seed, shape, ties)
    got = metrics.map_similarity(a, b, "ssim").tolist()
    for i in range(2):
        expected = ref.ssim(loc.min_max(a[i]), loc.min_max(b[i]))
        assert got[i] == pytest.approx(expected, abs=1e-12)


def test_ssim_of_a_volume_matches_the_reference() -> None:
    a, b = _pair(0, (11, 11, 12), ties=False)
    got = metrics.map_similarity(a[:1], b[:1], "ssim").tolist()
    assert got[0] == pytest.approx(ref.ssim(loc.min_max(a[0]), loc.min_max(b[0])), abs=1e-12)


@given(st.integers(0, 2**16), st.sampled_from([(16, 16), (11, 30), (12, 13, 14)]))
@examples(15)
def test_ssim_matches_scikit_image(seed: int, shape: tuple[int, ...]) -> None:
    from skimage.metrics import structural_similarity

    a, b = _pair(seed, shape, ties=False)
    got = metrics.map_similarity(a, b, "ssim").tolist()
    for i in range(2):
        x, y = (loc.min_max(m).numpy() for m in (a[i], b[i]))
        theirs = structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1
        )
        assert got[i] == pytest.approx(theirs, abs=1e-10)


def test_ssim_of_constant_maps_and_identical_maps() -> None:
    a = torch.zeros(1, 1, 12, 12)
    assert metrics.map_similarity(a, a, "ssim").tolist() == [1.0]
    b = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert metrics.map_similarity(b, 3 * b, "ssim").item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(NormGradError, match="11 pixels"):
        metrics.map_similarity(torch.rand(1, 8, 8), torch.rand(1, 8, 8), "ssim")


def test_agreement_has_an_interval_and_measures_are_checked() -> None:
    a, b = _pair(1, (12, 12), ties=False)
    a, b = a.repeat(5, 1, 1), b.repeat(5, 1, 1)
    for measure in ("spearman", "spearman_abs", "ssim"):
        r = metrics.map_agreement(a, b, measure, resamples=200)
        values = metrics.map_similarity(a, b, measure)
        assert float(r.mean) == pytest.approx(float(values.mean()))
        assert float(r.low) <= float(r.mean) <= float(r.high)
    with pytest.raises(NormGradError, match="measure"):
        metrics.map_similarity(a, b, "hog")
    with pytest.raises(NormGradError, match="maps_b"):
        metrics.map_similarity(a, b[:, :5], "spearman")


def test_volumes_agree_with_themselves() -> None:
    a = torch.rand(2, 1, 11, 12, 13, generator=torch.Generator().manual_seed(2))
    for measure in ("spearman", "spearman_abs", "ssim"):
        np.testing.assert_allclose(metrics.map_similarity(a, a, measure).numpy(), 1.0)


@pytest.mark.parametrize("value", [float("inf"), -float("inf")])
def test_ssim_refuses_maps_with_an_infinity(value: float) -> None:
    a = torch.rand(2, 12, 13, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[1, 3, 3] = value  # +inf once gave NaN, -inf a similarity of nonsense
    with pytest.raises(NormGradError, match=r"maps_b: expected finite maps, got NaN or \+-inf"):
        metrics.map_similarity(a, b, "ssim")
    with pytest.raises(NormGradError, match=r"maps_a: expected finite maps"):
        metrics.map_similarity(b, a, "ssim")
