"""Peaks, object shapes, FROC, energy and multi-object pointing games against looped references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from normgrad import ArgumentTypeError, InvalidArgumentError, ShapeError, metrics
from normgrad.metrics import Box, Ellipse, Polygon
from normgrad.metrics._multi_pointing import multi_from_peaks, peaks_needed
from normgrad.metrics._regions.prepared import prepare

from .conftest import examples, requires_cuda
from .reference.detection import reference_energy, reference_froc, reference_match
from .reference.peaks import reference_peaks
from .reference.shapes import reference_covers, reference_mask

# ---------------------------------------------------------------------------------------
# strategies: small maps with ties, shapes on and over the border, one-pixel objects


@st.composite
def small_maps(draw: st.DrawFn, ndim: int = 2, first: int = 7) -> torch.Tensor:
    """Maps with few levels; ``first``: the largest first axis (more rows than the 8 bands
    searched at first, when cut into bands of one row)."""
    n = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, first))] + [draw(st.integers(1, 7)) for _ in range(ndim - 1)]
    levels = draw(st.integers(1, 4))  # few levels: ties and plateaus
    values = draw(
        st.lists(
            st.integers(0, levels), min_size=n * math.prod(shape), max_size=n * math.prod(shape)
        )
    )
    return torch.tensor(values, dtype=torch.float32).reshape(n, *shape)


coordinate = st.integers(-3, 10).map(lambda v: v / 2) | st.integers(-2, 9).map(float)


@st.composite
def shapes(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["box", "ellipse", "polygon"]))
    if kind == "polygon":
        vertices = draw(st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=6))
        return Polygon(vertices)
    x1, y1, x2, y2 = (draw(coordinate) for _ in range(4))
    return (Box if kind == "box" else Ellipse).from_corners(x1, y1, x2, y2)


# ---------------------------------------------------------------------------------------
# shapes


@given(shapes(), st.integers(1, 8), st.integers(1, 8))
@examples(150)
def test_shape_masks_match_point_in_shape_on_pixel_centres(
    shape: object, height: int, width: int
) -> None:
    assert isinstance(shape, metrics.Shape)
    expected = reference_mask(shape, height, width)
    assert torch.equal(shape.mask((height, width)), expected)
    assert shape.covers((height, width)) == bool(expected.any())


extreme = st.floats(allow_nan=False, allow_infinity=False)  # products overflow, subnormals


@given(
    st.lists(
        st.tuples(st.floats(-4, 30, width=32) | extreme, st.floats(-4, 30, width=32) | extreme),
        min_size=1,
        max_size=7,
    ),
    st.tuples(st.floats(-4, 30), st.floats(-4, 30), st.floats(0, 30), st.floats(0, 30)),
)
@example(  # a row's term overflows to the column's infinity: no zero cross product
    vertices=[(9.000000000000002, 5.999999999999999), (-1850386.37, -4.69e68), (11.91, 1e308)],
    corner=(0.0, 0.0, 1.0, 1.0),
)
@examples(150)
def test_rasterised_grids_equal_the_test_of_each_pixel(
    vertices: list[tuple[float, float]], corner: tuple[float, float, float, float]
) -> None:
    """Masks come from grids (a row's terms and a column's computed once); for any float
    coordinates the grid test is the per-pixel test, bit for bit (the sign of a difference
    is the order of its terms)."""
    from normgrad.metrics._regions.shapes import contains_many

    x, y, w, h = corner
    found = [Polygon(vertices), Ellipse(x, y, x + w, y + h), Box(x, y, x + w, y + h)]
    pixels = torch.cartesian_prod(torch.arange(24), torch.arange(26))
    columns = torch.arange(26, dtype=torch.float64).expand(3, 26)
    rows = torch.arange(24, dtype=torch.float64).expand(3, 24)
    for i, shape in enumerate(found):
        expected = contains_many([shape], pixels[None])[0].view(24, 26)
        grid = type(shape)._inside_grid([shape], columns[i : i + 1], rows[i : i + 1])
        assert torch.equal(grid[0], expected)


def test_shapes_by_hand() -> None:
    # the boundary belongs to the polygon: a unit square covers its 4 corner pixels
    assert Polygon([(1, 1), (2, 1), (2, 2), (1, 2)]).mask((4, 4)).nonzero().tolist() == [
        [1, 1],
        [1, 2],
        [2, 1],
        [2, 2],
    ]
    # a one-pixel object, and an ellipse of zero width is its segment
    assert Box(2, 3, 2, 3).mask((5, 5)).nonzero().tolist() == [[3, 2]]
    assert Ellipse(1, 0, 1, 2).mask((4, 3)).nonzero().tolist() == [[0, 1], [1, 1], [2, 1]]
    # the circle of radius 2 at (2, 2): 13 pixel centres within distance 2
    assert int(Ellipse(0, 0, 4, 4).mask((5, 5)).sum()) == 13
    # a bow tie (self-intersecting), triangles left and right meeting at (2, 2)
    tie = Polygon([(0, 0), (4, 4), (4, 0), (0, 4)])
    assert tie.mask((5, 5))[:, 2].tolist() == [False, False, True, False, False]
    assert tie.mask((5, 5))[0].tolist() == [True, False, False, False, True]


def test_shapes_tested_in_parts_and_far_away(monkeypatch: pytest.MonkeyPatch) -> None:
    import normgrad.metrics._regions.shapes as shapes_module

    # one point against a polygon whose temporaries are "large": no part left to split
    monkeypatch.setattr(shapes_module, "_RASTER_POINTS", 1)
    star = Polygon([(0, 0), (4, 0), (4, 4), (0, 4), (2, 2), (1, 3)])
    assert torch.equal(star.mask((5, 6)), reference_mask(star, 5, 6))
    assert [s.covers((5, 6)) for s in (star, Box(9, 9, 9, 9))] == [True, False]
    monkeypatch.undo()
    # bounds whose sum is beyond float: far from the image, covering nothing
    far = [Box(0, 1e308, 0, 1.7e308), Polygon([(1e308, 0), (1.7e308, 2)]), Box(0, 0, 1, 1)]
    assert [s.covers((4, 4)) for s in far] == [reference_covers(s, 4, 4) for s in far]
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 1] = 1.0
    assert metrics.multi_pointing_game(maps, [far]).item() == 1.0


def test_shape_errors() -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"Box: expected finite boxes .* with min <= max .* got \[3.0, 0.0, 1.0, 2.0\]; "
        "for two corners in any order use Box.from_corners",
    ):
        Box(3, 0, 1, 2)
    with pytest.raises(InvalidArgumentError, match="Ellipse: expected finite"):
        Ellipse(0, 0, math.nan, 2)
    with pytest.raises(ShapeError, match=r"Polygon: expected vertices of shape \(V, 2\)"):
        Polygon([(0, 0, 1)])
    with pytest.raises(ShapeError, match="Polygon"):
        Polygon([])


# ---------------------------------------------------------------------------------------
# peaks


def assert_peaks_are_the_reference(
    found: metrics.Peaks, maps: torch.Tensor, k: int, min_distance: float
) -> None:
    """Every map's peaks, values and valid slots are those of the literal reference."""
    for i in range(maps.shape[0]):
        expected = reference_peaks(maps[i], k, min_distance, [1.0] * maps[i].ndim)
        count = len(expected)
        assert found.valid[i].tolist() == [True] * count + [False] * (k - count)
        assert [tuple(c) for c in found.coords[i, :count].tolist()] == [c for c, _ in expected]
        assert found.values[i, :count].tolist() == [v for _, v in expected]
        assert bool(found.values[i, count:].isnan().all())


@given(
    small_maps(first=14),
    st.integers(1, 5),
    st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0]),
    st.sampled_from([1, 5, 12, 4096]),
)
@examples(200)
def test_peaks_match_reference(maps: torch.Tensor, k: int, min_distance: float, block: int) -> None:
    # small blocks: bands of one or a few rows, searched a few at a time
    found = metrics.peaks(maps, k, min_distance=min_distance, block=block)
    assert_peaks_are_the_reference(found, maps, k, min_distance)


@given(
    small_maps(ndim=3, first=11),
    st.integers(1, 4),
    st.sampled_from([0.0, 1.0, 2.0]),
    st.sampled_from([1, 20, 4096]),
)
@examples(80)
def test_peaks_3d_match_reference(
    maps: torch.Tensor, k: int, min_distance: float, block: int
) -> None:
    found = metrics.peaks(maps.unsqueeze(1), k, min_distance=min_distance, block=block)
    for i in range(maps.shape[0]):
        expected = reference_peaks(maps[i], k, min_distance, [1.0] * maps[i].ndim)
        got = found.coords[i][found.valid[i]].tolist()
        assert [tuple(c) for c in got] == [c for c, _ in expected]


@given(
    small_maps(first=14),
    st.integers(1, 6),
    st.integers(0, 40),
    st.integers(0, 5),
    st.sampled_from([1, 5, 12, 4096]),
)
@examples(200)
def test_more_peaks_begin_with_fewer_peaks(
    maps: torch.Tensor, k: int, more: int, min_distance: int, block: int
) -> None:
    # greedy suppression is prefix-consistent: the first k of k + more peaks are the k
    # peaks (what evaluate relies on to find the peaks once for "multi" and "froc")
    few = metrics.peaks(maps, k, min_distance=min_distance, block=block)
    many = metrics.peaks(maps, k + more, min_distance=min_distance, block=block)
    assert torch.equal(many.valid[:, :k], few.valid)
    assert torch.equal(many.coords[:, :k], few.coords)
    assert torch.equal(many.values[:, :k].nan_to_num(-1), few.values.nan_to_num(-1))
    short = ~few.valid[:, -1]  # fewer than k peaks: there are no more to find
    assert not bool(many.valid[short, k:].any())


@given(
    small_maps(first=9),
    st.integers(1, 5),
    st.sampled_from([math.sqrt(2), math.sqrt(5), math.sqrt(8), 2.5, 1e200]),
    st.sampled_from([1, 2, 3, 4096]),
    st.data(),
)
@examples(150)
def test_peaks_with_minus_infinity_and_irrational_distances_match_reference(
    maps: torch.Tensor, k: int, min_distance: float, block: int, data: st.DataObject
) -> None:
    # -inf ranks below everything (whole stretches of it included); a distance of exactly
    # sqrt(2) is at least math.sqrt(2), though math.sqrt(2) ** 2 > 2
    lowest = data.draw(st.integers(0, 4))
    maps = maps.masked_fill(maps < lowest, -math.inf)
    found = metrics.peaks(maps, k, min_distance=min_distance, block=block)
    assert_peaks_are_the_reference(found, maps, k, min_distance)


@given(
    st.one_of(small_maps(first=14), small_maps(ndim=3, first=6)),
    st.integers(1, 6),
    st.sampled_from([0.0, 1.0, math.sqrt(2), 3.0]),
    st.sampled_from([1, 2, 5, 4096]),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 60)),
    st.booleans(),
)
@examples(200)
def test_peaks_in_many_rounds_chunks_and_passes_match_reference(
    maps: torch.Tensor,
    k: int,
    min_distance: float,
    block: int,
    sizes: tuple[int, int, int],
    minus_infinity: bool,
) -> None:
    """With tiny first rounds, candidate lists and chunks, the search's later rounds, the
    suppression's later passes and the bookkeeping across chunks of maps all run."""
    from normgrad.metrics._peak_search import Tuning
    from normgrad.metrics._peaks import search_peaks

    if minus_infinity:
        maps = maps.masked_fill(maps == 0, -math.inf)
    first_stretches, first_candidates, chunk_elements = sizes
    tuning = Tuning(
        first_stretches=first_stretches,
        first_candidates=first_candidates,
        chunk_elements=chunk_elements,
    )
    # (N, 1, *spatial): a 3-D map's first axis is not a channel
    found = search_peaks(maps.unsqueeze(1), k, min_distance, None, block, tuning)
    assert_peaks_are_the_reference(found, maps, k, min_distance)


def test_peaks_by_hand_edge_cases() -> None:
    maps = torch.zeros(2, 3, 4)
    maps[0, 0, 0] = maps[0, 1, 1] = 2.0  # diagonal neighbours, sqrt(2) apart
    maps[1, :2] = -math.inf  # two whole rows of -inf
    maps[1, 2, 3] = 1.0
    found = metrics.peaks(maps, 3, min_distance=math.sqrt(2), block=2)
    assert found.coords[0, :2].tolist() == [[0, 0], [1, 1]]
    assert found.coords[1, :2].tolist() == [[2, 3], [2, 0]]
    assert found.valid.tolist() == [[True, True, False], [True, True, False]]
    # no maps at all, and a distance whose square is beyond float
    empty = metrics.peaks(torch.zeros(0, 1, 5, 5), 2)
    assert empty.coords.shape == (0, 2, 2) and empty.valid.shape == (0, 2)
    far = metrics.peaks(maps, 3, min_distance=1e200)
    assert far.valid.tolist() == [[True, False, False], [True, False, False]]


def test_no_maps_give_empty_results() -> None:
    # an empty batch (the last shard of a small data set, a filtered batch) scores nothing
    maps = torch.zeros(0, 1, 5, 5)
    assert metrics.points(maps).shape == (0, 2)
    assert metrics.pointing_game(maps, []).shape == (0,)
    assert metrics.energy_pointing_game(maps, []).shape == (0,)
    assert metrics.energy_pointing_game(maps, torch.zeros(0, 1, 5, 5, dtype=torch.bool)).shape == (
        0,
    )
    assert metrics.multi_pointing_game(maps, []).shape == (0,)
    result = metrics.froc(maps, [])
    assert (result.images, result.objects) == (0, 0) and math.isnan(result.froc)


def test_peaks_need_more_candidates_than_the_first_round() -> None:
    # 200 plateau pixels of one maximum come before a second, lower maximum: the first
    # round's 64 candidates all lie on the plateau and are suppressed
    maps = torch.zeros(1, 30, 30)
    maps[0, :10, :20] = 2.0
    maps[0, 25, 25] = 1.0
    for block in (30, 4096):  # bands of one row, and the whole map
        found = metrics.peaks(maps, 2, min_distance=40, block=block)
        assert found.coords[0].tolist() == [[0, 0], [0, 0]]
        assert found.valid[0].tolist() == [True, False]
        found = metrics.peaks(maps, 2, min_distance=25, block=block)
        assert found.coords[0].tolist() == [[0, 0], [25, 25]]


def test_first_peak_is_the_pointing_games_point() -> None:
    torch.manual_seed(0)
    maps = torch.randint(0, 3, (20, 1, 9, 11)).float()
    maps[:, 0, 0, 0] = -1  # not constant
    found = metrics.peaks(maps, 3, min_distance=2)
    assert torch.equal(found.coords[:, 0], metrics.points(maps))


def test_peaks_errors() -> None:
    maps = torch.rand(2, 1, 6, 6)
    with pytest.raises(InvalidArgumentError, match="k: expected a positive int, got 0"):
        metrics.peaks(maps, 0)
    with pytest.raises(InvalidArgumentError, match="min_distance"):
        metrics.peaks(maps, 1, min_distance=-1)
    bad = maps.clone()
    bad[1, 0, 2, 2] = math.nan
    with pytest.raises(
        InvalidArgumentError,
        match=r"saliency: expected maps without NaN or \+inf, got them in 1 map",
    ):
        metrics.peaks(bad, 1)
    assert not bool(metrics.peaks(torch.ones(1, 4, 4), 2).valid.any())  # constant: no peak


# ---------------------------------------------------------------------------------------
# FROC


@st.composite
def detection_cases(draw: st.DrawFn) -> tuple[torch.Tensor, list[list[object]], list[float]]:
    maps = draw(small_maps())
    n = maps.shape[0]
    objects = [draw(st.lists(shapes(), max_size=3)) for _ in range(n)]
    probabilities = [draw(st.sampled_from([0.25, 0.5, 1.0])) for _ in range(n)]
    return maps, objects, probabilities


@given(
    detection_cases(),
    st.integers(1, 4),
    st.sampled_from([0.0, 1.5, 3.0]),
    st.booleans(),
)
@examples(150)
def test_froc_matches_reference(
    case: tuple[torch.Tensor, list[list[object]], list[float]],
    k: int,
    min_distance: float,
    use_probabilities: bool,
) -> None:
    maps, objects, probabilities = case
    rates = (0.125, 0.5, 1.0, 2.0)
    p = probabilities if use_probabilities else None
    expected, fps, sens = reference_froc(maps, objects, k, min_distance, rates, p)
    got = metrics.froc(
        maps,
        objects,  # type: ignore[arg-type]
        k=k,
        min_distance=min_distance,
        rates=rates,
        probabilities=torch.tensor(p) if p is not None else None,
    )
    assert got.fps_per_image.tolist() == pytest.approx(fps)
    assert got.sensitivity.tolist() == pytest.approx(sens, nan_ok=True)
    assert got.froc == pytest.approx(expected, nan_ok=True)


def test_froc_by_hand() -> None:
    # 4 images, 3 objects; detections (value, image, verdict) ranked by value:
    #   0.9 img0 in A (TP)   0.8 img0 in A again (FP: A is found)   0.7 img1 nothing (FP)
    #   0.6 img2 in C (TP)   0.5 img3, an image without objects (FP); B is never found
    # operating points (FP/4, TP/3): (0,0) (0,1/3) (1/4,1/3) (1/2,1/3) (1/2,2/3) (3/4,2/3)
    # rates 1/8 1/4 1/2 1 2 4 8 -> 1/3 1/3 2/3 2/3 2/3 2/3 2/3, mean (2/3 + 10/3) / 7 = 4/7
    maps = torch.zeros(4, 12, 12)
    maps[0, 1, 1], maps[0, 1, 5], maps[0, 10, 10] = 0.9, 0.8, 0.1  # 0.1 peak is beyond k=2
    maps[1, 6, 6] = 0.7
    maps[2, 3, 8] = 0.6
    maps[3, 5, 5] = 0.5
    objects = [
        [Box(0, 0, 6, 2), Ellipse(8, 8, 10, 10)],  # A holds (1,1) and (1,5); B
        [],
        [Polygon([(7, 2), (9, 2), (9, 4)])],  # C holds (x=8, y=3)
        [],
    ]
    result = metrics.froc(maps, objects, k=2, min_distance=2)  # type: ignore[arg-type]
    assert result.sensitivities == pytest.approx((1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3))
    assert result.froc == pytest.approx(4 / 7)
    assert result.fps_per_image.tolist() == [0, 0, 0.25, 0.5, 0.5, 0.75]
    assert (result.images, result.objects, result.found) == (4, 3, 2)
    # the image probability reorders across images: img1 at 0.7 * 0.1 now comes last
    #   0.9 TP, 0.8 FP, 0.6 TP, 0.5 FP, 0.07 FP -> (0,1/3) (1/4,1/3) (1/4,2/3) (1/2,2/3) (3/4,2/3)
    #   rates -> 1/3 2/3 2/3 ... mean (1/3 + 6 * 2/3) / 7 = 13/21
    probabilities = torch.tensor([1.0, 0.1, 1.0, 1.0])
    result = metrics.froc(maps, objects, k=2, min_distance=2, probabilities=probabilities)  # type: ignore[arg-type]
    assert result.froc == pytest.approx(13 / 21)


def test_froc_ties_enter_together_and_accumulates() -> None:
    # two images, one object each; both peaks 1.0: image 0 TP, image 1 FP (object elsewhere)
    # one operating point (1/2, 1/2) after (0, 0): rate 1/8 and 1/4 read 0, the others 1/2
    maps = torch.zeros(2, 6, 6)
    maps[0, 1, 1] = maps[1, 1, 1] = 1.0
    boxes = [torch.tensor([[0, 0, 2, 2]]), torch.tensor([[4, 4, 5, 5]])]
    result = metrics.froc(maps, boxes, k=1)
    assert result.fps_per_image.tolist() == [0, 0.5]
    assert result.sensitivity.tolist() == [0, 0.5]
    assert result.froc == pytest.approx(5 * 0.5 / 7)
    acc = metrics.FROC(k=1)
    acc.update(maps[:1], boxes[:1])
    acc.update(maps[1:], boxes[1:])
    assert acc.compute().froc == pytest.approx(result.froc)
    acc.reset()
    assert math.isnan(acc.compute().froc)  # nothing to find


def test_froc_add_takes_tensors_or_python_numbers_alike() -> None:
    """Detections matched elsewhere (a record's, as Python numbers, or tensors) give the
    FROC of the same detections found by ``update``; lengths that differ are refused."""
    maps = torch.zeros(3, 8, 8)
    maps[0, 1, 1], maps[0, 6, 6], maps[1, 4, 4], maps[2, 2, 5] = 0.9, 0.5, 0.7, 0.7
    boxes = [torch.tensor([[0, 0, 2, 2]]), torch.tensor([[6, 6, 8, 8]]), torch.zeros(0, 4)]
    found = metrics.FROC(k=2, min_distance=2)
    found.update(maps, boxes)
    detections = [([0.9, 0.5], [True, False]), ([0.7], [False]), ([0.7], [False])]
    host, device = metrics.FROC(), metrics.FROC()
    for (scores, positive), objects in zip(detections, [1, 1, 0]):
        host.add(scores, positive, images=1, objects=objects)
        device.add(torch.tensor(scores), torch.tensor(positive), images=1, objects=objects)
    assert host.compute().froc == device.compute().froc == found.compute().froc
    # a list beside a tensor is taken as it is: two scores apart in float64 but equal in
    # float32 stay apart (the true positive first: FROC 1.0; tied, it would be 4/7)
    close = [0.30000000000000004, 0.3000000000000001]
    as_tensor = torch.tensor(close, dtype=torch.float64)
    for scores, positive in [(close, torch.tensor([False, True])), (as_tensor, [False, True])]:
        mixed = metrics.FROC()
        mixed.add(scores, positive, images=1, objects=1)
        assert mixed.compute().froc == 1.0
    assert host.compute().sensitivities == found.compute().sensitivities
    with pytest.raises(ShapeError, match=r"positive: expected one flag per detection"):
        host.add([0.5, 0.4], [True], images=1, objects=1)


def test_more_peaks_can_lower_froc_but_never_the_final_sensitivity() -> None:
    # image 0: an object, its one peak 1.0 on it; image 1: no object, peaks 0.8 and 0.7;
    # image 2: an object, its one peak 0.6 on it. k = 1: 1.0 TP, 0.8 FP, 0.6 TP; the
    # operating points (0, 1/2) (1/3, 1/2) (1/3, 1): rate 1/2 reads 1. k = 2 adds image 1's
    # 0.7, a false positive that outranks image 2's true positive: (2/3, 1) comes too
    # late for rate 1/2, which reads 1/2. FROC falls; the final sensitivity stays 1.
    maps = torch.zeros(3, 8, 8)
    maps[0, 1, 1], maps[1, 1, 1], maps[1, 6, 6], maps[2, 1, 1] = 1.0, 0.8, 0.7, 0.6
    boxes = [torch.tensor([[0, 0, 2, 2]]), torch.zeros(0, 4), torch.tensor([[0, 0, 2, 2]])]
    one = metrics.froc(maps, boxes, k=1, min_distance=2)
    two = metrics.froc(maps, boxes, k=2, min_distance=2)
    assert one.sensitivities == pytest.approx((1 / 2, 1 / 2, 1, 1, 1, 1, 1))
    assert two.sensitivities == pytest.approx((1 / 2, 1 / 2, 1 / 2, 1, 1, 1, 1))
    assert two.froc < one.froc
    assert one.sensitivity[-1] == two.sensitivity[-1] == 1.0


@given(detection_cases(), st.integers(1, 3), st.sampled_from([0.0, 1.5, 3.0]))
@examples(60)
def test_more_peaks_only_raise_the_final_sensitivity(
    case: tuple[torch.Tensor, list[list[object]], list[float]], k: int, min_distance: float
) -> None:
    maps, objects, _ = case
    fewer = metrics.froc(maps, objects, k=k, min_distance=min_distance)  # type: ignore[arg-type]
    more = metrics.froc(maps, objects, k=k + 1, min_distance=min_distance)  # type: ignore[arg-type]
    assert more.found >= fewer.found
    assert float(more.sensitivity[-1]) >= float(fewer.sensitivity[-1]) or math.isnan(fewer.froc)


def test_froc_3d_boxes() -> None:
    # one volume, object box x 1..2, y 1..2, z 3..3; peaks at (z=3,y=1,x=1), a TP, and
    # (z=0,y=3,x=3), a FP: points (0, 0) (0, 1) (1, 1)
    maps = torch.zeros(1, 5, 4, 4)
    maps[0, 3, 1, 1], maps[0, 0, 3, 3] = 1.0, 0.5
    result = metrics.froc(maps, [torch.tensor([[1, 1, 3, 2, 2, 3]])], k=2, min_distance=2)
    assert result.sensitivity.tolist() == [0, 1, 1]
    assert result.fps_per_image.tolist() == [0, 0, 1]


def test_detection_errors() -> None:
    maps = torch.rand(2, 1, 8, 8)
    boxes = [torch.tensor([[0, 0, 2, 2]]), torch.zeros(0, 4)]
    with pytest.raises(ShapeError, match="regions: expected the objects of 2 images"):
        metrics.froc(maps, boxes[:1])
    with pytest.raises(ArgumentTypeError, match=r"regions\[1\]\[0\]: expected a box .* or a Box"):
        metrics.froc(maps, [[], ["circle"]])  # type: ignore[list-item]
    with pytest.raises(ArgumentTypeError, match="a mask merges touching objects"):
        metrics.froc(maps, torch.zeros(2, 8, 8, dtype=torch.bool))  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"regions\[0\]: expected boxes of shape \(K, 4\)"):
        metrics.multi_pointing_game(maps, [torch.zeros(1, 6), torch.zeros(0, 4)])
    with pytest.raises(
        InvalidArgumentError, match=r"regions\[0\]: expected finite boxes .* regions\[0\]\[1\] = "
    ):
        metrics.froc(maps, [torch.tensor([[0, 0, 1, 1], [3, 0, 1, 1]]), torch.zeros(0, 4)])
    with pytest.raises(InvalidArgumentError, match="k: expected a positive int"):
        metrics.froc(maps, boxes, k=0)
    with pytest.raises(ShapeError, match=r"probabilities: expected 2 numbers in \[0, 1\]"):
        metrics.froc(maps, boxes, probabilities=torch.tensor([0.5]))
    bad = maps.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(InvalidArgumentError, match="saliency: expected maps without NaN"):
        metrics.froc(bad, boxes)
    with pytest.raises(InvalidArgumentError, match="saliency: expected maps without NaN"):
        metrics.multi_pointing_game(bad, boxes)
    with pytest.raises(ArgumentTypeError, match="Polygon is 2-D but the maps are 3-D"):
        metrics.froc(torch.rand(1, 3, 4, 4), [[Polygon([(0, 0)])]])


# ---------------------------------------------------------------------------------------
# energy and multi-object pointing games


@given(detection_cases(), st.booleans())
@examples(100)
def test_energy_matches_reference(
    case: tuple[torch.Tensor, list[list[object]], list[float]], signed: bool
) -> None:
    maps, objects, _ = case
    if signed:
        maps = maps - 1.5  # some negative mass
    import normgrad.metrics._energy as energy_module

    n = maps.shape[0]
    got = metrics.energy_pointing_game(maps, objects)  # type: ignore[arg-type]
    saved = energy_module._BY_WINDOW
    energy_module._BY_WINDOW = ()  # the path of the GPU: masks of every image's union
    try:
        by_masks = metrics.energy_pointing_game(maps, objects)  # type: ignore[arg-type]
    finally:
        energy_module._BY_WINDOW = saved
    torch.testing.assert_close(by_masks, got, equal_nan=True)
    for i in range(n):
        expected = reference_energy(maps[i], objects[i])
        assert float(got[i]) == pytest.approx(expected, nan_ok=True)


@given(
    small_maps(),
    st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), max_size=4),
    st.sampled_from([16, 1 << 19]),
    st.booleans(),
)
@examples(80)
def test_energy_of_overlapping_boxes_matches_reference(
    maps: torch.Tensor, corners: list[tuple[float, ...]], chunk: int, by_window: bool
) -> None:
    import normgrad.metrics._energy as energy_module

    n = maps.shape[0]
    maps = maps - 1.0
    boxes = [Box.from_corners(*c).bounds() for c in corners]
    per_sample = [torch.tensor(boxes[i::n], dtype=torch.float64).reshape(-1, 4) for i in range(n)]
    saved = energy_module._CHUNK_ELEMENTS, energy_module._BY_WINDOW
    energy_module._CHUNK_ELEMENTS = chunk  # a few maps per chunk, or all at once
    energy_module._BY_WINDOW = saved[1] if by_window else ()  # or masks, as on the GPU
    try:
        got = metrics.energy_pointing_game(maps, per_sample)
    finally:
        energy_module._CHUNK_ELEMENTS, energy_module._BY_WINDOW = saved
    for i in range(n):
        expected = reference_energy(maps[i], [Box(*b) for b in boxes[i::n]])
        assert float(got[i]) == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize("chunk", [1, 3 << 19])
def test_energy_of_a_map_does_not_depend_on_its_batch_or_threads(chunk: int) -> None:
    """Each map's sums are reduced alone, in one order: the same bits alone, in any batch,
    in chunks of any size and on any number of threads (a single sum over all the values
    would be split between threads)."""
    import normgrad.metrics._energy as energy_module

    gen = torch.Generator().manual_seed(5)
    maps = torch.randn(5, 1, 250, 260, generator=gen)  # 65,000 values: reductions split
    # windows of over 32,768 pixels, one box or the union of two
    boxes = [
        torch.tensor([[5.0, 5.0, 240.0, 230.0 + i], [0, 0, 3, 3]][: 1 + i % 2]) for i in range(5)
    ]
    saved, threads = energy_module._CHUNK_ELEMENTS, torch.get_num_threads()
    energy_module._CHUNK_ELEMENTS = chunk  # one map per chunk (pairs, then), or all
    try:
        whole = metrics.energy_pointing_game(maps, boxes)
        alone = torch.cat(
            [metrics.energy_pointing_game(maps[i : i + 1], boxes[i : i + 1]) for i in range(5)]
        )
        # the last 4, 3 and 2 maps: chunks split otherwise (in pairs, a last map alone)
        rest = [metrics.energy_pointing_game(maps[i:], boxes[i:]) for i in (1, 2, 3)]
        torch.set_num_threads(1 if threads > 1 else 3)
        other = metrics.energy_pointing_game(maps, boxes)
    finally:
        energy_module._CHUNK_ELEMENTS = saved
        torch.set_num_threads(threads)
    assert torch.equal(whole, alone)
    assert all(torch.equal(whole[i:], part) for i, part in zip((1, 2, 3), rest))
    assert torch.equal(whole, other)


def test_energy_masks_boxes_and_errors() -> None:
    # a 4x4 map of ones with a 2x2 box: 4 of 16
    maps = torch.ones(2, 1, 4, 4)
    boxes = [torch.tensor([[0, 0, 1, 1]]), torch.zeros(0, 4)]
    got = metrics.energy_pointing_game(maps, boxes)
    assert got[0] == 0.25 and math.isnan(got[1])
    masks = metrics.prepare_regions(boxes, (2, 4, 4)).to_masks()
    assert torch.equal(metrics.energy_pointing_game(maps, masks).nan_to_num(-1), got.nan_to_num(-1))
    volume = torch.zeros(1, 2, 3, 3)
    volume[0, 1, 1, 1] = 3.0
    volume[0, 0, 0, 0] = 1.0
    assert metrics.energy_pointing_game(volume, [torch.tensor([[1, 1, 1, 1, 1, 1]])]).item() == 0.75
    with pytest.raises(ShapeError, match="regions: expected boolean masks of shape"):
        metrics.energy_pointing_game(maps, torch.zeros(2, 5, 4, dtype=torch.bool))
    bad = maps.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(InvalidArgumentError, match="saliency: expected maps without NaN"):
        metrics.energy_pointing_game(bad, boxes)
    with pytest.raises(ArgumentTypeError, match=r"regions\[0\]\[1\]: expected a Box"):
        metrics.energy_pointing_game(maps, [[Box(0, 0, 1, 1), (0, 0, 1, 1)], []])  # type: ignore[list-item]


@given(detection_cases(), st.sampled_from([0.0, 1.5, 3.0]))
@examples(100)
def test_multi_pointing_game_matches_reference(
    case: tuple[torch.Tensor, list[list[object]], list[float]], min_distance: float
) -> None:
    maps, objects, _ = case
    n, height, width = maps.shape
    got = metrics.multi_pointing_game(maps, objects, min_distance=min_distance)  # type: ignore[arg-type]
    # from more peaks than the largest count (as evaluate does for FROC's k): the same
    prepared = prepare(objects, maps.shape, one_by_one=True)  # type: ignore[arg-type]
    more = metrics.peaks(maps, peaks_needed(prepared.counts()) + 3, min_distance=min_distance)
    assert torch.equal(multi_from_peaks(more, prepared).nan_to_num(-1), got.nan_to_num(-1))
    for i in range(n):
        counted = [o for o in objects[i] if reference_covers(o, height, width)]
        if not counted:
            assert math.isnan(got[i])
            continue
        found = reference_peaks(maps[i], len(counted), min_distance, [1.0, 1.0])
        hits = sum(reference_match([c for c, _ in found], counted))
        assert float(got[i]) == pytest.approx(hits / len(counted))


def test_multi_pointing_game_one_peak_one_object() -> None:
    # two overlapping boxes, one peak inside both: K = 2 peaks, the second outside both
    maps = torch.zeros(1, 10, 10)
    maps[0, 2, 2], maps[0, 8, 8] = 1.0, 0.5
    boxes = [torch.tensor([[0, 0, 4, 4], [1, 1, 5, 5]])]
    assert metrics.multi_pointing_game(maps, boxes, min_distance=2).item() == 0.5
    prepared = prepare(boxes, maps.shape, one_by_one=True)
    with pytest.raises(InvalidArgumentError, match="found: expected at least 2 peaks per map"):
        multi_from_peaks(metrics.peaks(maps, 1, min_distance=2), prepared)


def test_froc_curve_plot(tmp_path: object) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from normgrad import viz

    maps = torch.zeros(2, 8, 8)
    maps[0, 1, 1], maps[1, 5, 5] = 1.0, 0.5
    result = metrics.froc(maps, [torch.tensor([[0, 0, 2, 2]]), torch.zeros(0, 4)], k=1)
    ax = viz.froc_curve({"a": result, "b": result})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (1.000)", "b (1.000)"]
    xs, ys = ax.lines[0].get_data()
    # FPI 0 is drawn at 1/16 on the log axis; the last point holds on to 16
    assert list(xs) == [1 / 16, 1 / 16, 0.5, 16] and list(ys) == [0, 1, 1, 1]
    with pytest.raises(ArgumentTypeError, match="results: expected FROCResult values"):
        viz.froc_curve({"a": 0.5})  # type: ignore[dict-item]


@given(detection_cases(), st.sampled_from([0.0, 1.0, 2.5]))
@examples(60)
def test_pointing_game_takes_shapes_as_their_pixels(
    case: tuple[torch.Tensor, list[list[object]], list[float]], tolerance: float
) -> None:
    maps, objects, _ = case
    n, height, width = maps.shape
    masks = torch.zeros(n, height, width, dtype=torch.bool)
    for i in range(n):
        for obj in objects[i]:
            masks[i] |= reference_mask(obj, height, width)
    got = metrics.pointing_game(maps, objects, tolerance=tolerance)  # type: ignore[arg-type]
    expected = metrics.pointing_game(maps, masks, tolerance=tolerance)
    assert torch.equal(got.nan_to_num(-1), expected.nan_to_num(-1))
    prepared = metrics.prepare_regions(objects, maps.shape)  # type: ignore[arg-type]
    assert torch.equal(prepared.to_masks(), masks)


# ---------------------------------------------------------------------------------------
# on the GPU


@requires_cuda
def test_detection_metrics_on_cuda_match_cpu() -> None:
    """Every metric runs on the maps' device and gives the CPU's results: exactly where
    they are found by comparison (peaks, matching), to rounding where they are sums."""
    gen = torch.Generator().manual_seed(11)
    # values on a coarse grid: ties between pixels and between stretches
    maps = (torch.rand(6, 1, 64, 200, generator=gen) * 8).floor()
    volumes = (torch.rand(3, 1, 6, 20, 24, generator=gen) * 6).floor()
    objects: list[list[Box | Ellipse | Polygon]] = [
        [Box(3, 4, 40, 30), Ellipse(100, 10, 160, 50)],
        [Polygon([(10, 10), (90, 20), (40, 60)])],
        [],
        [Box(0, 0, 199, 63)],
        [Ellipse(20, 20, 21, 21), Box(150, 40, 190, 60)],
        [Polygon([(5, 5)])],
    ]
    boxes = [torch.tensor([o.bounds() for o in image]).reshape(-1, 4) for image in objects]
    cuboids = [
        torch.tensor([[2, 3, 1, 20, 15, 4]]),
        torch.zeros(0, 6),
        torch.tensor([[0, 0, 0, 5, 5, 5]]),
    ]
    for k, distance in ((1, 1.0), (7, 3.0), (30, 0.0)):
        for m in (maps, volumes):
            cpu, gpu = (
                metrics.peaks(m, k, min_distance=distance),
                metrics.peaks(m.cuda(), k, min_distance=distance),
            )
            assert gpu.coords.device.type == "cuda"
            assert torch.equal(cpu.coords, gpu.coords.cpu()) and torch.equal(
                cpu.valid, gpu.valid.cpu()
            )
            assert torch.equal(cpu.values.nan_to_num(-1), gpu.values.cpu().nan_to_num(-1))
    probabilities = torch.rand(6, generator=gen)
    cpu_froc = metrics.froc(maps, objects, k=5, min_distance=4, probabilities=probabilities)
    gpu_froc = metrics.froc(
        maps.cuda(), objects, k=5, min_distance=4, probabilities=probabilities.cuda()
    )
    assert cpu_froc.froc == gpu_froc.froc and cpu_froc.found == gpu_froc.found
    assert torch.equal(cpu_froc.sensitivity, gpu_froc.sensitivity)
    multi = metrics.multi_pointing_game(maps.cuda(), objects, min_distance=4)
    assert multi.device.type == "cuda"
    assert torch.equal(
        metrics.multi_pointing_game(maps, objects, min_distance=4).nan_to_num(-1),
        multi.cpu().nan_to_num(-1),
    )
    signed = maps - 3
    for regions in (objects, boxes, metrics.prepare_regions(boxes, (6, 64, 200)).to_masks()):
        gpu_regions = regions.cuda() if isinstance(regions, torch.Tensor) else regions
        energy = metrics.energy_pointing_game(signed.cuda(), gpu_regions)
        assert energy.device.type == "cuda"
        torch.testing.assert_close(
            energy.cpu(), metrics.energy_pointing_game(signed, regions), equal_nan=True
        )
    energy = metrics.energy_pointing_game(volumes.cuda(), cuboids)
    torch.testing.assert_close(
        energy.cpu(), metrics.energy_pointing_game(volumes, cuboids), equal_nan=True
    )
    hits = metrics.pointing_game(maps.cuda(), boxes, tolerance=3)
    assert torch.equal(
        hits.cpu().nan_to_num(-1), metrics.pointing_game(maps, boxes, tolerance=3).nan_to_num(-1)
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 20, 4))
    x = torch.rand(5, 3, 16, 20, generator=gen)
    saliency = (torch.rand(5, 16, 20, generator=gen) * 4).floor()  # ties, broken by position
    for baseline in ("zeros", "blur", "mean"):
        cpu_di = metrics.deletion_insertion(
            model, x, saliency, steps=7, baseline=baseline, batch_size=4
        )
        gpu_di = metrics.deletion_insertion(
            model.cuda(), x.cuda(), saliency.cuda(), steps=7, baseline=baseline, batch_size=4
        )
        model.cpu()
        assert gpu_di.deletion.device.type == "cuda"
        torch.testing.assert_close(gpu_di.deletion.cpu(), cpu_di.deletion, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(gpu_di.insertion.cpu(), cpu_di.insertion, rtol=1e-4, atol=1e-5)
