"""Peaks: the fast search against the definition, the definition against a pixel loop, and
distances in spacing units for the peaks, FROC and the multi-object game alike."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import normgrad
from normgrad import metrics
from normgrad.metrics._peak_search import Tuning
from normgrad.metrics._peaks import peaks_by_definition, search_peaks

from .models import TinyCNN, seeded
from .reference.peaks import reference_peaks


@st.composite
def maps_of(draw: st.DrawFn) -> torch.Tensor:
    """Maps with few levels (ties, plateaus), 2-D or 3-D, some -inf."""
    ndim = draw(st.sampled_from([2, 2, 3]))
    n = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 9 if ndim == 2 else 4)) for _ in range(ndim)]
    values = draw(st.lists(st.integers(-1, 3), min_size=n * math.prod(shape), max_size=n * math.prod(shape)))  # fmt: skip
    maps = torch.tensor(values, dtype=torch.float32).reshape(n, *shape)
    return maps.masked_fill(maps < 0, -math.inf)


spacings = st.one_of(
    st.none(), st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 0.3]), min_size=3, max_size=3)
)


@given(maps_of(), st.integers(1, 5), st.sampled_from([0.0, 1.0, 1.5, math.sqrt(2), 3.0]), spacings)
def test_the_definition_is_the_pixel_loop(
    maps: torch.Tensor, k: int, min_distance: float, spacing: list[float] | None
) -> None:
    space = None if spacing is None else spacing[: maps.ndim - 1]
    found = peaks_by_definition(maps, k, min_distance=min_distance, spacing=space)
    for i in range(maps.shape[0]):
        expected = reference_peaks(maps[i], k, min_distance, space or [1.0] * (maps.ndim - 1))
        count = len(expected)
        assert found.valid[i].tolist() == [True] * count + [False] * (k - count)
        assert [tuple(c) for c in found.coords[i, :count].tolist()] == [c for c, _ in expected]
        assert found.values[i, :count].tolist() == [v for _, v in expected]


@given(
    maps_of(),
    st.integers(1, 6),
    st.sampled_from([0.0, 1.0, 1.5, math.sqrt(2), 3.0, 4.5]),
    spacings,
    st.sampled_from([1, 2, 5, 96]),
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 80)),
)
def test_the_fast_search_finds_the_definitions_peaks(
    maps: torch.Tensor,
    k: int,
    min_distance: float,
    spacing: list[float] | None,
    block: int,
    sizes: tuple[int, int, int],
) -> None:
    """With any stretches and tiny rounds, candidate lists and chunks (every branch of the
    search), and with voxel sizes: bit for bit the definition's peaks."""
    space = None if spacing is None else spacing[: maps.ndim - 1]
    tuning = Tuning(first_stretches=sizes[0], first_candidates=sizes[1], chunk_elements=sizes[2])
    fast = search_peaks(maps, k, min_distance, space, block, tuning)
    defined = peaks_by_definition(maps, k, min_distance=min_distance, spacing=space)
    assert torch.equal(fast.valid, defined.valid)
    assert torch.equal(fast.coords, defined.coords)
    assert torch.equal(fast.values.nan_to_num(-7), defined.values.nan_to_num(-7))
    public = metrics.peaks(maps, k, min_distance=min_distance, spacing=space, block=block)
    assert torch.equal(public.coords, defined.coords) and torch.equal(public.valid, defined.valid)


def test_both_refuse_nan_and_infinity() -> None:
    maps = torch.rand(2, 5, 5)
    maps[1, 2, 2] = math.inf
    for find in (metrics.peaks, peaks_by_definition):
        with pytest.raises(normgrad.InvalidArgumentError, match=r"NaN or \+inf, got them in 1"):
            find(maps, 2)


def test_min_distance_is_in_spacing_units_everywhere() -> None:
    """Rows twice as far apart as columns: two maxima two rows apart are 4 units apart, kept
    at min_distance 3 with the spacing and suppressed without it; FROC and the
    multi-object game follow."""
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 2, 2], maps[0, 0, 4, 2] = 1.0, 0.9
    spacing = (2.0, 1.0)
    assert metrics.peaks(maps, 2, min_distance=3).valid.tolist() == [[True, False]]
    assert metrics.peaks(maps, 2, min_distance=3, spacing=spacing).valid.tolist() == [[True, True]]
    objects = [torch.tensor([[1, 1, 3, 2], [1, 4, 3, 5]])]  # around each maximum
    assert metrics.multi_pointing_game(maps, objects, min_distance=3).item() == 0.5
    assert metrics.multi_pointing_game(maps, objects, min_distance=3, spacing=spacing).item() == 1
    assert metrics.froc(maps, objects, k=2, min_distance=3).found == 1
    assert metrics.froc(maps, objects, k=2, min_distance=3, spacing=spacing).found == 2


def test_evaluate_finds_peaks_at_its_tolerance_in_spacing_units() -> None:
    model = seeded(TinyCNN()).double()
    explainer = normgrad.Gradient(model)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, 3, 12, 12, generator=gen, dtype=torch.float64)
    boxes = [torch.tensor([[1, 1, 6, 6]]), torch.tensor([[5, 2, 9, 9]]), torch.zeros(0, 4)]
    spacing = (2.0, 0.5)
    result = normgrad.evaluate(
        model, {"g": explainer}, [(x, None, boxes)], tolerance=3, spacing=spacing,
        metrics=("froc",), peaks=4, progress=False, reference_rows=False,
    )  # fmt: skip
    found = metrics.peaks(explainer(x), 4, min_distance=3, spacing=spacing)
    by_hand = [
        tuple(float(v) for v, ok in zip(values, valid) if ok)
        for values, valid in zip(found.values.tolist(), found.valid.tolist())
    ]
    assert [tuple(s for s, _ in r.detections) for r in result.records] == by_hand
