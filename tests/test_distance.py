"""Pointing distances and the Pointing Game curve against literal loops and pointing_game."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from normgrad import ArgumentTypeError, InvalidArgumentError, ShapeError, metrics
from normgrad.metrics import Box, Ellipse, Polygon, Shape
from normgrad.metrics._distance import _threshold

from .conftest import requires_cuda
from .reference.distance import (
    reference_curve_area,
    reference_curve_hits,
    reference_distances,
    reference_hits,
    reference_threshold,
)
from .reference.pointing import reference_box_mask

# boxes drawn wholly outside their map are meant: they cover nothing
pytestmark = pytest.mark.filterwarnings("ignore:regions.*wholly outside:UserWarning")


def same(a: list[float], b: list[float]) -> bool:
    """Equal bit for bit, NaN equal to NaN."""
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b)
    )


def same_curve(a: metrics.PointingGameCurve, b: metrics.PointingGameCurve) -> bool:
    """Every field equal, NaN equal to NaN."""
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, tuple):
            if not same(list(x), list(y)):
                return False
        elif not same([x], [y]):
            return False
    return True


# ---------------------------------------------------------------------------------------
# strategies

Case = tuple[torch.Tensor, object, torch.Tensor, "list[float] | None"]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Maps with ties for the maximum (and constant ones), their regions in one of the forms
    pointing_game accepts, the same regions as literal masks, and a spacing."""
    ndim = draw(st.sampled_from([2, 2, 3]))
    shape = tuple(draw(st.integers(1, 9 if ndim == 2 else 5)) for _ in range(ndim))
    batch = draw(st.integers(1, 4))
    levels = draw(st.sampled_from([1, 2, 3, 100]))  # few levels -> many ties; 1 -> constant
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    saliency = torch.randint(0, levels, (batch, *shape), generator=gen).float()
    kinds = ["masks", "boxes", "padded", "prepared"] + (["shapes"] if ndim == 2 else [])
    kind = draw(st.sampled_from(kinds))
    spacing = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.one_of(
                    st.sampled_from([0.5, 1.0, 2.5, 0.1, 1 / 3]),
                    st.floats(0.05, 20, allow_nan=False, allow_infinity=False),
                ),
                min_size=ndim,
                max_size=ndim,
            ),
        )
    )
    if kind == "masks":
        density = draw(st.sampled_from([0.0, 0.05, 0.3]))
        masks = torch.rand((batch, *shape), generator=gen) < density
        return saliency, masks, masks, spacing
    if kind == "shapes":
        objects: list[list[Shape]] = []
        for _ in range(batch):
            items: list[Shape] = []
            for _ in range(draw(st.integers(0, 2))):
                x0, y0 = draw(st.floats(-3, shape[1] + 2)), draw(st.floats(-3, shape[0] + 2))
                x1, y1 = x0 + draw(st.floats(0, 6)), y0 + draw(st.floats(0, 6))
                form = draw(st.sampled_from(["box", "ellipse", "polygon"]))
                if form == "box":
                    items.append(Box(x0, y0, x1, y1))
                elif form == "ellipse":
                    items.append(Ellipse(x0, y0, x1, y1))
                else:
                    items.append(Polygon([[x0, y0], [x1, y0], [x0, y1]]))
            objects.append(items)
        masks = torch.stack([metrics.shapes_mask(o, shape) for o in objects])
        return saliency, objects, masks, spacing
    boxes = []
    for _ in range(batch):
        rows = []
        for _ in range(draw(st.integers(0, 3))):
            lo = [draw(st.floats(-4, s + 3)) for s in shape[::-1]]
            hi = [c + draw(st.floats(0, 5)) for c in lo]
            rows.append(lo + hi)
        boxes.append(torch.tensor(rows, dtype=torch.float64).view(-1, 2 * ndim))
    masks = torch.stack([reference_box_mask(b, shape) for b in boxes])
    if kind == "padded":
        k = max(1, max(b.shape[0] for b in boxes))
        if (batch, k, 2 * ndim) == (batch, *shape):
            k += 1  # a padded tensor shaped like the masks is refused as ambiguous (tested apart)
        padded = torch.full((batch, k, 2 * ndim), math.nan, dtype=torch.float64)
        for i, b in enumerate(boxes):
            padded[i, : b.shape[0]] = b
        return saliency, padded, masks, spacing
    if kind == "prepared":
        return saliency, metrics.prepare_regions(boxes, saliency.shape), masks, spacing
    return saliency, boxes, masks, spacing


def achievable_tolerances(shape: tuple[int, ...], spacing: list[float]) -> list[float]:
    """Every distance from one pixel to another of the grid (the Pointing Game's boundary
    cases), each as sqrt and as its neighbours, and some plain numbers."""
    out = {0.0, 0.5, 1.0, 1.5, 2.0, math.sqrt(2), 3.0, 1e-300, 100.0}
    for offset in itertools.product(*(range(s) for s in shape)):
        d2 = 0.0
        for o, s in zip(offset, spacing):
            d2 = d2 + (o * s) * (o * s)
        root = math.sqrt(d2)
        out |= {root, math.nextafter(root, 0), math.nextafter(root, math.inf)}
        out.add(reference_threshold(d2))
    return sorted(out)


# ---------------------------------------------------------------------------------------
# the threshold: the largest float whose square does not exceed the squared distance


@given(
    st.one_of(
        st.floats(0, 1e300, allow_nan=False),
        st.floats(2.0**-1000, 1e6, allow_nan=False),
        st.integers(0, 10**6).map(float),
        st.integers(0, 2**52).map(lambda i: math.ldexp(i, -1074)),  # subnormal squares
    )
)
def test_threshold_is_the_largest_float_whose_square_fits(value: float) -> None:
    dist2 = torch.tensor([value], dtype=torch.float64)
    expected = reference_threshold(value)
    assert _threshold(dist2, narrow=False).item() == expected
    if value == 0 or value >= 2.0**-1000:
        assert _threshold(dist2, narrow=True).item() == expected


def test_threshold_at_binade_edges_and_overflow() -> None:
    values = [2.0**k for k in range(-1000, 1000, 7)]
    values += [math.nextafter(v, 0) for v in values] + [math.nextafter(v, math.inf) for v in values]
    values += [1.7976931348623157e308, math.inf, 0.0, 2.0, 3.0, 5e-324]
    dist2 = torch.tensor(values, dtype=torch.float64)
    expected = [reference_threshold(v) for v in values]
    assert _threshold(dist2, narrow=False).tolist() == expected
    normal = [i for i, v in enumerate(values) if v == 0 or v >= 2.0**-1000]
    assert [_threshold(dist2, narrow=True).tolist()[i] for i in normal] == [
        expected[i] for i in normal
    ]


def test_integer_distances_are_exact() -> None:
    maps = torch.zeros(4, 1, 30, 30)
    maps[:, 0, 0, 0] = 1
    masks = torch.zeros(4, 30, 30, dtype=torch.bool)
    for i, (y, x) in enumerate([(0, 0), (0, 7), (3, 4), (20, 21)]):
        masks[i, y, x] = True
    got = metrics.pointing_distances(maps, masks).tolist()
    assert got == [0.0, 7.0, 5.0, 29.0]


# ---------------------------------------------------------------------------------------
# distances against the literal loop, hits against pointing_game at every tolerance


@given(cases())
def test_distances_match_the_literal_loop(case: Case) -> None:
    saliency, regions, masks, spacing = case
    shape = tuple(saliency.shape[1:])
    expected = reference_distances(saliency, masks, spacing or [1.0] * len(shape))
    got = metrics.pointing_distances(saliency.unsqueeze(1), regions, spacing)
    assert got.dtype == torch.float64
    assert same(got.tolist(), expected)


@given(cases())
def test_hits_equal_pointing_game_at_every_tolerance(case: Case) -> None:
    saliency, regions, _, spacing = case
    shape = tuple(saliency.shape[1:])
    saliency = saliency.unsqueeze(1)  # (N, 1, *spatial): a volume of depth 1 stays one
    distances = metrics.pointing_distances(saliency, regions, spacing)
    for tolerance in achievable_tolerances(shape, spacing or [1.0] * len(shape)):
        game = metrics.pointing_game(saliency, regions, tolerance, spacing)
        hits = metrics.pointing_hits(distances, tolerance)
        assert same(hits.tolist(), game.tolist()), tolerance
        assert same(hits.tolist(), reference_hits(distances.tolist(), tolerance)), tolerance
        assert hits.dtype == game.dtype


def test_padded_boxes_shaped_like_the_masks_are_refused() -> None:
    """(1, 2, 4) floats over maps of 2x4 read as masks (not boolean) or as two padded boxes:
    refused rather than guessed, with the fix named."""
    maps = torch.rand(1, 1, 2, 4)
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [math.nan] * 4]])
    with pytest.raises(ArgumentTypeError, match=r"masks must be boolean: pass masks.bool\(\)"):
        metrics.pointing_distances(maps, boxes)
    padded = torch.cat([boxes, torch.full((1, 1, 4), math.nan)], dim=1)  # (1, 3, 4): boxes
    assert metrics.pointing_distances(maps, padded).shape == (1,)


def test_distance_is_not_rounded_up_past_the_boundary() -> None:
    """sqrt(2) rounds up; the Pointing Game at math.sqrt(2) is a hit for a diagonal
    neighbour, so its distance must be the float below."""
    maps = torch.zeros(1, 1, 3, 3)
    maps[0, 0, 0, 0] = 1
    masks = torch.zeros(1, 3, 3, dtype=torch.bool)
    masks[0, 1, 1] = True
    d = metrics.pointing_distances(maps, masks)
    assert metrics.pointing_game(maps, masks, math.sqrt(2)).item() == 1.0
    assert d.item() == math.nextafter(math.sqrt(2), 0)
    assert metrics.pointing_hits(d, math.sqrt(2)).item() == 1.0
    assert metrics.pointing_hits(d, d.item()).item() == 0.0


def test_tolerance_whose_square_is_a_tie() -> None:
    s = 1.5 + 2.0**-26  # s * s is exactly halfway between two floats
    assert s**2 != s * s
    maps = torch.zeros(1, 1, 1, 3)
    maps[0, 0, 0, 0] = 1
    masks = torch.zeros(1, 1, 3, dtype=torch.bool)
    masks[0, 0, 1] = True  # one pixel of width s away
    d = metrics.pointing_distances(maps, masks, spacing=[1.0, s])
    assert d.item() == s
    game = metrics.pointing_game(maps, masks, s, [1.0, s])
    assert game.item() == metrics.pointing_hits(d, s).item() == 0.0


def test_large_masks_are_searched_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from normgrad.metrics import _distance

    gen = torch.Generator().manual_seed(3)
    maps = torch.rand(7, 1, 4, 6, 5, generator=gen)
    masks = torch.rand(7, 4, 6, 5, generator=gen) < 0.05
    whole = metrics.pointing_distances(maps, masks, spacing=[2.0, 0.7, 1.3])
    monkeypatch.setattr(_distance, "_CHUNK_ELEMENTS", 150)  # one or two maps per chunk
    chunked = metrics.pointing_distances(maps, masks, spacing=[2.0, 0.7, 1.3])
    assert same(whole.tolist(), chunked.tolist())
    expected = reference_distances(maps[:, 0], masks, [2.0, 0.7, 1.3])
    assert same(whole.tolist(), expected)


def test_tiny_spacing_takes_the_bitwise_search() -> None:
    """Voxel sizes whose squares are subnormal: the threshold is searched bit by bit and
    still agrees with pointing_game."""
    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(6, 1, 5, 6, generator=gen)
    masks = torch.rand(6, 5, 6, generator=gen) < 0.2
    spacing = [3e-160, 7e-161]
    distances = metrics.pointing_distances(maps, masks, spacing)
    assert same(distances.tolist(), reference_distances(maps[:, 0], masks, spacing))
    for tolerance in achievable_tolerances((5, 6), spacing):
        game = metrics.pointing_game(maps, masks, tolerance, spacing)
        assert same(metrics.pointing_hits(distances, tolerance).tolist(), game.tolist())


# ---------------------------------------------------------------------------------------
# the curve


@st.composite
def distance_lists(draw: st.DrawFn) -> list[float]:
    values = st.one_of(
        st.sampled_from([0.0, 1.0, 2.0, 2.5, math.inf, math.nan]),
        st.floats(0, 30, allow_nan=False),
    )
    return draw(st.lists(values, min_size=0, max_size=30))


@given(
    distance_lists(),
    st.lists(
        st.one_of(st.sampled_from([0.0, 1.0, 2.0, 2.5]), st.floats(0, 40)),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([0.8, 0.95, 0.99]),
)
def test_curve_matches_a_literal_count(
    distances: list[float], tolerances: list[float], confidence: float
) -> None:
    if max(tolerances) == 0:
        tolerances = [*tolerances, 1.0]
    d = torch.tensor(distances, dtype=torch.float64)
    curve = metrics.pointing_game_curve(d, tolerances=tolerances, confidence=confidence)
    counted = [x for x in distances if not math.isnan(x)]
    assert curve.counted == len(counted)
    assert curve.skipped == len(distances) - len(counted)
    assert curve.tolerances == tuple(tolerances)
    assert curve.max_tolerance == max(tolerances)
    for j, hits in enumerate(reference_curve_hits(distances, tolerances)):
        assert curve.hits[j] == hits
        if counted:
            assert curve.hit_rate[j] == hits / len(counted)
        else:
            assert math.isnan(curve.hit_rate[j])
        low, high = metrics.wilson_interval(hits, len(counted), confidence)
        assert same([curve.low[j], curve.high[j]], [low, high])


@given(distance_lists(), st.floats(0.5, 40))
def test_area_matches_a_fine_numerical_integration(
    distances: list[float], max_tolerance: float
) -> None:
    d = torch.tensor(distances, dtype=torch.float64)
    curve = metrics.pointing_game_curve(d, max_tolerance=max_tolerance)
    steps = 20_000  # midpoint rule on the step function: off by at most 1 / steps
    expected = reference_curve_area(distances, max_tolerance, steps)
    if math.isnan(expected):
        assert math.isnan(curve.auc)
        return
    assert abs(curve.auc - expected) <= 1.0 / steps + 1e-12
    assert 0.0 <= curve.auc <= 1.0


def test_area_in_closed_form() -> None:
    d = torch.tensor([0.0, 2.0, 5.0, math.inf, math.nan, 10.0], dtype=torch.float64)
    curve = metrics.pointing_game_curve(d, max_tolerance=8)
    assert curve.auc == pytest.approx((1 + 6 / 8 + 3 / 8 + 0 + 0) / 5, abs=1e-15)
    assert curve.tolerances[0] == 0.0 and curve.tolerances[-1] == 8.0
    assert len(curve.tolerances) == 101
    assert "AUC 0.425" in str(curve)


@given(cases())
def test_curve_from_maps_equals_curve_from_distances_and_pointing_game(case: Case) -> None:
    saliency, regions, _, spacing = case
    saliency = saliency.unsqueeze(1)
    tolerances = [0.0, 1.0, 1.5, 2.0, 3.5, 8.0]
    from_maps = metrics.pointing_game_curve(saliency, regions, tolerances, spacing=spacing)
    distances = metrics.pointing_distances(saliency, regions, spacing)
    from_distances = metrics.pointing_game_curve(distances, tolerances=tolerances)
    assert same_curve(from_maps, from_distances)
    from_list = metrics.pointing_game_curve(distances.tolist(), tolerances=tolerances)
    assert same_curve(from_list, from_maps)
    for t, hits in zip(tolerances, from_maps.hits):
        game = metrics.pointing_game(saliency, regions, t, spacing)
        assert int(game.nan_to_num(0).sum()) == hits
        assert int((~game.isnan()).sum()) == from_maps.counted


def test_curve_arguments_are_checked() -> None:
    d = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match="tolerances or max_tolerance"):
        metrics.pointing_game_curve(d)
    with pytest.raises(InvalidArgumentError, match="max_tolerance"):
        metrics.pointing_game_curve(d, tolerances=[0])
    with pytest.raises(InvalidArgumentError, match="max_tolerance"):
        metrics.pointing_game_curve(d, max_tolerance=0)
    with pytest.raises(InvalidArgumentError, match="tolerances\\[1\\]"):
        metrics.pointing_game_curve(d, tolerances=[1, -1])
    with pytest.raises(InvalidArgumentError, match="at least one"):
        metrics.pointing_game_curve(d, tolerances=[])
    with pytest.raises(InvalidArgumentError, match="spacing"):
        metrics.pointing_game_curve(d, max_tolerance=3, spacing=[1.0, 1.0])
    with pytest.raises(ArgumentTypeError, match="float64"):
        metrics.pointing_game_curve(d.float(), max_tolerance=3)
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        metrics.pointing_game_curve(-d, max_tolerance=3)
    with pytest.raises(ShapeError, match="pass the regions"):
        metrics.pointing_game_curve(torch.rand(2, 1, 8, 8), max_tolerance=3)
    with pytest.raises(ArgumentTypeError, match="maps"):
        metrics.pointing_game_curve([1.0], torch.zeros(1, 8, 8, dtype=torch.bool))
    with pytest.raises(ArgumentTypeError, match="distances"):
        metrics.pointing_hits("far", 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="tolerance"):
        metrics.pointing_hits(d, -1)


def test_an_empty_batch_has_no_distances() -> None:
    for regions in (torch.zeros(0, 5, 5, dtype=torch.bool), []):
        d = metrics.pointing_distances(torch.rand(0, 1, 5, 5), regions)
        assert d.shape == (0,) and d.dtype == torch.float64
    curve = metrics.pointing_game_curve(d, max_tolerance=3)
    assert curve.counted == 0 and math.isnan(curve.auc) and math.isnan(curve.hit_rate[0])


def test_distances_reject_what_pointing_game_rejects() -> None:
    maps = torch.rand(2, 1, 8, 8)
    with pytest.raises(ShapeError):
        metrics.pointing_distances(maps, torch.zeros(3, 8, 8, dtype=torch.bool))
    with pytest.raises(InvalidArgumentError, match="spacing"):
        metrics.pointing_distances(maps, torch.zeros(2, 8, 8, dtype=torch.bool), [1.0, -1.0])
    nan = maps.clone()
    nan[0, 0, 0, 0] = math.nan
    with pytest.raises(InvalidArgumentError, match="NaN"):
        metrics.pointing_distances(nan, torch.zeros(2, 8, 8, dtype=torch.bool))


@requires_cuda
def test_distances_on_cuda_equal_cpu() -> None:
    gen = torch.Generator().manual_seed(11)
    maps = torch.randint(0, 3, (16, 1, 6, 40, 50), generator=gen).float()
    masks = torch.rand(16, 6, 40, 50, generator=gen) < 0.01
    boxes = [torch.tensor([[3.0, 4.0, 1.0, 9.5, 30.0, 4.0]]) for _ in range(16)]
    for regions in (masks, boxes):
        spacing = [2.5, 0.7, 0.7]
        cpu = metrics.pointing_distances(maps, regions, spacing)
        cuda_regions = regions.cuda() if isinstance(regions, torch.Tensor) else regions
        gpu = metrics.pointing_distances(maps.cuda(), cuda_regions, spacing)
        assert gpu.device.type == "cuda"
        assert same(gpu.cpu().tolist(), cpu.tolist())
        for t in (0.0, 0.7, 1.4, 2.5, 5.0, 30.0):
            game = metrics.pointing_game(maps.cuda(), cuda_regions, t, spacing)
            assert same(metrics.pointing_hits(gpu, t).cpu().tolist(), game.cpu().tolist())
