"""sMPRT, eMPRT, the similarity measures of the cascade and agreement between models,
against literal references (``tests/reference/randomization.py``), in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import normgrad
from normgrad import metrics, sanity
from normgrad._errors import NormGradError
from normgrad._mprt import discrete_entropy

from .conftest import examples
from .reference import randomization as ref
from .reference import similarity as sim


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    return model.double().eval()


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1)).double()


def _explainer(m: nn.Module) -> normgrad.Gradient:
    return normgrad.Gradient(m)


BLOCKS = ["6", "2", "0"]


def test_smooth_mprt_matches_the_reference() -> None:
    model, x = _model(), _x()
    result = sanity.smooth_mprt(_explainer, model, x, blocks=BLOCKS, samples=3, noise=0.2)
    target = model(x).argmax(dim=1)
    maps = [
        ref.noise_averaged(
            lambda xi, i, m=m: normgrad.Gradient(m)(xi, target[i : i + 1]), x, 3, 0.2, 0
        )
        for m in ref.states(model, BLOCKS, 0)
    ]
    assert result.similarity.shape == (3, 2)
    for step in range(3):
        for i in range(2):
            expected = sim.spearman(maps[0][i], maps[step + 1][i])
            assert float(result.similarity[step, i]) == pytest.approx(expected, abs=1e-9)


def test_one_noise_free_sample_is_the_plain_cascade() -> None:
    model, x = _model(), _x()
    for measure in ("spearman", "spearman_abs", "ssim"):
        plain = sanity.cascading_randomization(_explainer, model, x, blocks=BLOCKS, measure=measure)
        smooth = sanity.smooth_mprt(_explainer, model, x, blocks=BLOCKS, samples=1, measure=measure)
        torch.testing.assert_close(plain.similarity, smooth.similarity)
        assert plain.measure == measure and plain.spearman is plain.similarity


@given(st.integers(0, 2**16), st.sampled_from([1, 7, 100]), st.booleans())
@examples(25)
def test_discrete_entropy_matches_the_reference_and_numpy(seed: int, bins: int, ties: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    if ties:
        maps = maps.round()
    maps[2] = 0.25  # constant
    got = discrete_entropy(maps, bins).tolist()
    for value, m in zip(got, maps):
        assert value == pytest.approx(ref.discrete_entropy(m, bins), abs=1e-12)
        counts, _ = np.histogram(m.abs().numpy(), bins=bins)
        p = counts[counts > 0] / counts.sum()
        assert value == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-12)


def test_efficient_mprt_matches_the_reference() -> None:
    model, x = _model(), _x()
    result = sanity.efficient_mprt(_explainer, model, x, blocks=BLOCKS, bins=20)
    target = model(x).argmax(dim=1)
    expected = [
        [
            ref.discrete_entropy(normgrad.Gradient(m)(x[i : i + 1], target[i : i + 1]), 20)
            for i in range(2)
        ]
        for m in ref.states(model, BLOCKS, 0)
    ]
    torch.testing.assert_close(
        result.complexity, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9
    )
    ratio = [expected[-1][i] / expected[0][i] for i in range(2)]
    torch.testing.assert_close(result.ratio, torch.tensor(ratio, dtype=torch.float64))
    assert result.blocks == BLOCKS


def test_the_model_is_left_as_it_was() -> None:
    model, x = _model(), _x()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sanity.efficient_mprt(_explainer, model, x, blocks=BLOCKS)
    sanity.smooth_mprt(_explainer, model, x, blocks=BLOCKS, samples=2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_agreement_of_two_trainings_and_of_a_model_with_itself() -> None:
    x = _x().repeat(3, 1, 1, 1)
    same = sanity.agreement(_explainer, _model(0), _model(0), x, resamples=100)
    assert float(same.mean) == pytest.approx(1.0)
    other = sanity.agreement(_explainer, _model(0), _model(1), x, measure="ssim")
    maps_a = normgrad.Gradient(_model(0)).explain(x)
    maps_b = normgrad.Gradient(_model(1))(x, maps_a.classes)
    expected = metrics.map_similarity(maps_a.saliency, maps_b, "ssim").mean()
    assert float(other.mean) == pytest.approx(float(expected))
    assert float(other.low) <= float(other.mean) <= float(other.high)
    with pytest.raises(NormGradError, match="measure"):
        sanity.agreement(_explainer, _model(0), _model(1), x, measure="hog")
    with pytest.raises(NormGradError, match="samples"):
        sanity.smooth_mprt(_explainer, _model(0), x, blocks=BLOCKS, samples=0)
    assert not math.isnan(float(other.mean))


def test_a_sample_s_smooth_mprt_does_not_depend_on_its_batch() -> None:
    model = _model()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(2)).double()
    run = lambda inputs: sanity.smooth_mprt(  # noqa: E731
        _explainer, model, inputs, blocks=BLOCKS, samples=4, noise=0.3, keep_maps=True
    )
    whole, alone, pair = run(x), run(x[:1]), run(x[[0, 2]])
    assert whole.saliency is not None and alone.saliency is not None
    assert pair.saliency is not None
    for other in (alone, pair):
        torch.testing.assert_close(other.similarity[:, 0], whole.similarity[:, 0])
        torch.testing.assert_close(other.saliency[:, 0], whole.saliency[:, 0])
    torch.testing.assert_close(pair.similarity[:, 1], whole.similarity[:, 2])


@pytest.mark.parametrize("bins", [1, 0])
def test_efficient_mprt_refuses_fewer_than_two_bins(bins: int) -> None:
    with pytest.raises(NormGradError, match="bins"):
        sanity.efficient_mprt(_explainer, _model(), _x(), blocks=BLOCKS, bins=bins)
