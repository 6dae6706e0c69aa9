"""Metrics against literal, looped reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage, stats

from normgrad import ArgumentTypeError, InvalidArgumentError, ShapeError, metrics

from .reference.pointing import (
    reference_box_mask,
    reference_point,
    reference_pointing_game,
    reference_random_rate,
)

# ---------------------------------------------------------------------------------------
# strategies


@st.composite
def games(draw: st.DrawFn) -> tuple[torch.Tensor, list[torch.Tensor], float, list[float] | None]:
    ndim = draw(st.sampled_from([2, 2, 3]))
    shape = tuple(draw(st.integers(1, 12 if ndim == 2 else 5)) for _ in range(ndim))
    batch = draw(st.integers(1, 4))
    levels = draw(st.sampled_from([1, 2, 3, 100]))  # few levels -> many ties; 1 -> constant
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    saliency = torch.randint(0, levels, (batch, *shape), generator=gen).float()
    boxes = []
    for _ in range(batch):
        k = draw(st.integers(0, 3))
        rows = []
        for _ in range(k):
            lo = [draw(st.integers(-4, s + 3)) for s in shape[::-1]]
            hi = [c + draw(st.integers(0, 5)) for c in lo]  # width 0 = degenerate box
            rows.append(lo + hi)
        boxes.append(torch.tensor(rows, dtype=torch.long).view(-1, 2 * ndim))
    tolerance = draw(st.sampled_from([0, 0.5, 1, 1.5, 2, 3, math.sqrt(2), 5, 20]))
    spacing = draw(
        st.one_of(
            st.none(), st.lists(st.sampled_from([0.5, 1.0, 2.5]), min_size=ndim, max_size=ndim)
        )
    )
    return saliency, boxes, tolerance, spacing


@given(games())
def test_pointing_game_matches_reference(
    game: tuple[torch.Tensor, list[torch.Tensor], float, list[float] | None],
) -> None:
    saliency, boxes, tolerance, spacing = game
    shape = tuple(saliency.shape[1:])
    masks = torch.stack([reference_box_mask(b, shape) for b in boxes])
    expected = reference_pointing_game(saliency, masks, tolerance, spacing or [1.0] * len(shape))
    by_boxes = metrics.pointing_game(saliency.unsqueeze(1), boxes, tolerance, spacing)
    by_masks = metrics.pointing_game(saliency.unsqueeze(1), masks, tolerance, spacing)
    torch.testing.assert_close(
        by_boxes, torch.tensor(expected, dtype=torch.float32), equal_nan=True
    )
    torch.testing.assert_close(by_masks, by_boxes, equal_nan=True)


@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=3).map(tuple),
    batch=st.integers(1, 3),
    levels=st.sampled_from([1, 2, 3, 100]),
    block=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_points_by_blocks_match_reference(
    shape: tuple[int, ...], batch: int, levels: int, block: int, seed: int
) -> None:
    """Any block size (blocks cut across rows, one element, the whole map) finds the first
    maximum in row-major order."""
    gen = torch.Generator().manual_seed(seed)
    maps = torch.randint(0, levels, (batch, *shape), generator=gen).float()
    points = metrics.points(maps.unsqueeze(1), block=block)  # (N, 1, *spatial): never ambiguous
    assert [tuple(p) for p in points.tolist()] == [reference_point(m) for m in maps]


@pytest.mark.parametrize("shape", [(1, 13), (13, 1), (2, 13), (7, 61), (3, 5, 7), (3, 4099)])
def test_points_do_not_depend_on_the_block(shape: tuple[int, ...]) -> None:
    """Maps whose length has no divisor near the block (a prime length, rows of a prime
    width), rows longer than the block, and the block below, at and above a row and the
    whole map: always the first maximum in row-major order, also for maxima tied in two
    blocks far apart and a maximum in the very last pixel."""
    length = math.prod(shape)
    gen = torch.Generator().manual_seed(length)
    maps = torch.randint(0, 3, (4, *shape), generator=gen).float()
    maps[1] = 0
    maps[1].view(-1)[-1] = 1  # the last pixel alone
    maps[2].view(-1)[[1, length // 2, length - 2]] = 5  # tied far apart
    maps[3] = 2  # constant: no point
    expected = [reference_point(m) for m in maps]
    row = shape[-1]
    blocks = {1, 2, 3, 4, row - 1, row, row + 1, length - 1, length, length + 1, 4096}
    for block in sorted(b for b in blocks if b >= 1):
        points = metrics.points(maps.unsqueeze(1), block=block)
        assert [tuple(p) for p in points.tolist()] == expected, block
    default = metrics.points(maps.unsqueeze(1))  # the default block
    assert [tuple(p) for p in default.tolist()] == expected


@given(games())
def test_random_point_rate_matches_reference(
    game: tuple[torch.Tensor, list[torch.Tensor], float, list[float] | None],
) -> None:
    saliency, boxes, tolerance, spacing = game
    shape = tuple(saliency.shape[1:])
    rates = metrics.random_point_hit_rate(boxes, shape, tolerance, spacing)
    for n, b in enumerate(boxes):
        mask = reference_box_mask(b, shape)
        if not bool(mask.any()):
            assert math.isnan(rates[n])
        else:
            expected = reference_random_rate(mask, tolerance, spacing or [1.0] * len(shape))
            assert rates[n].item() == pytest.approx(expected, abs=1e-12)


def test_tolerance_whose_square_is_a_tie_follows_the_product() -> None:
    """``s * s`` is exactly halfway between two floats and ``s**2`` rounds it the other way:
    a region pixel exactly ``s`` away (one pixel of width ``s``) is a miss, as the literal
    rule says, both for the Pointing Game and for the random point."""
    s = 1.5 + 2.0**-26
    assert s**2 != s * s
    spacing = [1.0, s]
    maps = torch.zeros(1, 1, 1, 3)
    maps[0, 0, 0, 0] = 1
    masks = torch.zeros(1, 1, 3, dtype=torch.bool)
    masks[0, 0, 1] = True
    expected = reference_pointing_game(maps[:, 0], masks, s, spacing)
    assert expected == [0.0]
    assert metrics.pointing_game(maps, masks, s, spacing).tolist() == expected
    game = metrics.PointingGame(tolerance=s, spacing=spacing)
    assert game.update(maps, masks).tolist() == expected
    rate = metrics.random_point_hit_rate(masks, (1, 3), s, spacing)
    assert rate.tolist() == [reference_random_rate(masks[0], s, spacing)] == [1 / 3]


@st.composite
def thin_volumes(
    draw: st.DrawFn,
) -> tuple[torch.Tensor, list[torch.Tensor], float, list[float] | None]:
    """Volumes of depth 1 ``(N, 1, H, W)`` with boxes ``(K, 6)`` (z spans may miss 0)."""
    shape = (1, draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    batch = draw(st.integers(1, 4))
    levels = draw(st.sampled_from([1, 2, 100]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    saliency = torch.randint(0, levels, (batch, *shape), generator=gen).float()
    boxes = []
    for _ in range(batch):
        rows = []
        for _ in range(draw(st.integers(0, 2))):
            lo = [draw(st.integers(-3, s + 2)) for s in shape[::-1]]
            rows.append(lo + [c + draw(st.integers(0, 4)) for c in lo])
        boxes.append(torch.tensor(rows, dtype=torch.long).view(-1, 6))
    tolerance = draw(st.sampled_from([0, 1, 1.5, 3, 20]))
    spacing = draw(
        st.one_of(st.none(), st.lists(st.sampled_from([0.5, 1.0, 2.5]), min_size=3, max_size=3))
    )
    return saliency, boxes, tolerance, spacing


@given(thin_volumes())
def test_depth_one_volumes_match_reference(
    game: tuple[torch.Tensor, list[torch.Tensor], float, list[float] | None],
) -> None:
    """A volume of depth 1 ``(N, 1, 1, H, W)`` is read once as a volume, by
    ``pointing_game`` and by ``PointingGame.update`` alike (never again as 2-D maps)."""
    saliency, boxes, tolerance, spacing = game
    shape = tuple(saliency.shape[1:])
    masks = torch.stack([reference_box_mask(b, shape) for b in boxes])
    expected = torch.tensor(
        reference_pointing_game(saliency, masks, tolerance, spacing or [1.0] * 3),
        dtype=torch.float32,
    )
    volumes = saliency.unsqueeze(1)
    for regions in (masks, masks.unsqueeze(1), boxes):
        by_function = metrics.pointing_game(volumes, regions, tolerance, spacing)
        accumulator = metrics.PointingGame(tolerance, spacing)
        by_game = accumulator.update(volumes, regions)
        torch.testing.assert_close(by_function, expected, equal_nan=True)
        torch.testing.assert_close(by_game, expected, equal_nan=True)
        counted = expected[~torch.isnan(expected)]
        result = accumulator.compute()
        assert (result.hits, result.total) == (int(counted.sum()), counted.numel())


def test_an_empty_batch_has_empty_results() -> None:
    for spatial in ((5, 6), (3, 5, 6), (1, 5, 6)):
        maps = torch.rand(0, 1, *spatial)
        masks = torch.zeros(0, *spatial, dtype=torch.bool)
        for regions in (masks, []):
            out = metrics.pointing_game(maps, regions, 2)
            assert out.shape == (0,) and out.dtype == torch.float32
            game = metrics.PointingGame(tolerance=2)
            out = game.update(maps, regions)
            assert out.shape == (0,) and out.dtype == torch.float32
            result = game.compute()
            assert (result.hits, result.total, result.skipped) == (0, 0, 0)
            assert math.isnan(result.accuracy)


def test_disk_edge_is_a_miss() -> None:
    saliency = torch.zeros(1, 1, 40, 40)
    saliency[0, 0, 20, 20] = 1.0  # point (x=20, y=20)
    # target pixel exactly 15 to the right: distance == tolerance -> miss
    assert metrics.pointing_game(saliency, [torch.tensor([[35, 20, 35, 20]])], 15).item() == 0.0
    # one pixel closer -> hit
    assert metrics.pointing_game(saliency, [torch.tensor([[34, 20, 34, 20]])], 15).item() == 1.0
    # (9, 12) offset: 81 + 144 = 225 = 15^2 -> miss; (9, 11): 202 < 225 -> hit
    assert metrics.pointing_game(saliency, [torch.tensor([[29, 32, 29, 32]])], 15).item() == 0.0
    assert metrics.pointing_game(saliency, [torch.tensor([[29, 31, 29, 31]])], 15).item() == 1.0


def test_first_maximum_in_row_major_order() -> None:
    saliency = torch.zeros(1, 5, 5)
    saliency[0, 1, 4] = 1.0  # row 1, col 4  (first in row-major order)
    saliency[0, 3, 0] = 1.0  # row 3, col 0
    near_first = [torch.tensor([[4, 1, 4, 1]])]
    near_second = [torch.tensor([[0, 3, 0, 3]])]
    assert metrics.pointing_game(saliency, near_first, 1).item() == 1.0
    assert metrics.pointing_game(saliency, near_second, 1).item() == 0.0


def test_constant_map_points_nowhere_and_is_a_miss() -> None:
    saliency = torch.full((1, 1, 10, 10), 0.5)
    assert metrics.points(saliency).tolist() == [[-1, -1]]
    assert metrics.pointing_game(saliency, [torch.tensor([[0, 0, 0, 0]])], 1).item() == 0.0
    assert metrics.pointing_game(saliency, [torch.tensor([[0, 0, 9, 9]])], 50).item() == 0.0


def test_boxes_are_clipped_and_empty_samples_are_nan() -> None:
    saliency = torch.zeros(3, 1, 10, 10)
    saliency[:, 0, 9, 9] = 1.0
    boxes = [
        torch.tensor([[8, 8, 50, 50]]),  # partly outside: clipped, still hits
        torch.tensor([[20, 20, 30, 30]]),  # wholly outside: no target region
        torch.zeros(0, 4),  # no boxes
    ]
    with pytest.warns(UserWarning, match=r"samples \[1\] have regions wholly outside"):
        out = metrics.pointing_game(saliency, boxes, 2)
    assert out[0].item() == 1.0 and math.isnan(out[1]) and math.isnan(out[2])


def test_float_boxes_cover_the_integer_pixels_inside() -> None:
    saliency = torch.zeros(1, 1, 10, 10)
    saliency[0, 0, 5, 5] = 1.0
    # covers columns 7..8 only (ceil 6.5 = 7): distance 2 from x=5
    assert metrics.pointing_game(saliency, [torch.tensor([[6.5, 5.0, 8.9, 5.0]])], 2).item() == 0.0
    assert (
        metrics.pointing_game(saliency, [torch.tensor([[6.5, 5.0, 8.9, 5.0]])], 2.01).item() == 1.0
    )


def test_bad_inputs() -> None:
    saliency = torch.rand(2, 1, 8, 8)
    boxes = [torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0, 0, 1, 1]])]
    with pytest.raises(
        InvalidArgumentError, match="saliency: expected maps without NaN, got NaN in 1 map"
    ):
        bad = saliency.clone()
        bad[1, 0, 2, 2] = float("nan")
        metrics.pointing_game(bad, boxes)
    with pytest.raises(ShapeError, match=r"saliency: expected maps of shape \(N, 1, H, W\)"):
        metrics.pointing_game(torch.rand(8, 8), boxes)
    with pytest.raises(ShapeError, match=r"regions: expected one box tensor per map \(2\), got 1"):
        metrics.pointing_game(saliency, boxes[:1])
    with pytest.raises(ShapeError, match=r"regions\[0\]: expected boxes of shape \(K, 4\)"):
        metrics.pointing_game(saliency, [torch.tensor([[0, 0, 1]]), boxes[1]])
    with pytest.raises(
        InvalidArgumentError, match=r"regions\[1\]: expected finite boxes .* with min <= max"
    ):
        metrics.pointing_game(saliency, [boxes[0], torch.tensor([[5, 0, 1, 1]])])
    with pytest.raises(ShapeError, match=r"regions: expected boolean masks of shape \(2, 8, 8\)"):
        metrics.pointing_game(saliency, torch.zeros(2, 7, 8, dtype=torch.bool))
    with pytest.raises(ArgumentTypeError, match="regions: expected boolean masks"):
        metrics.pointing_game(saliency, torch.zeros(2, 8, 8))
    with pytest.raises(
        InvalidArgumentError, match="tolerance: expected a finite number >= 0, got -1"
    ):
        metrics.pointing_game(saliency, boxes, tolerance=-1)
    with pytest.raises(InvalidArgumentError, match=r"spacing: expected 2 positive voxel sizes"):
        metrics.pointing_game(saliency, boxes, spacing=[1.0])


def test_accumulator_and_wilson_interval() -> None:
    game = metrics.PointingGame(tolerance=1, confidence=0.9)
    maps = torch.zeros(4, 1, 6, 6)
    maps[:, 0, 0, 0] = 1
    boxes = [
        torch.tensor([[0, 0, 0, 0]]),
        torch.tensor([[5, 5, 5, 5]]),
        torch.zeros(0, 4),
        torch.tensor([[0, 0, 2, 2]]),
    ]
    game.update(maps, boxes)
    game.update(maps[:1], boxes[:1])
    result = game.compute()
    assert (result.hits, result.total, result.skipped) == (3, 4, 1)
    assert result.accuracy == 0.75
    ci = stats.binomtest(3, 4).proportion_ci(confidence_level=0.9, method="wilson")
    assert result.low == pytest.approx(ci.low) and result.high == pytest.approx(ci.high)
    assert "0.750" in str(result)
    game.reset()
    assert math.isnan(game.compute().accuracy)


@pytest.mark.parametrize(("hits", "total"), [(0, 10), (10, 10), (37, 120), (1, 1)])
def test_wilson_matches_scipy(hits: int, total: int) -> None:
    low, high = metrics.wilson_interval(hits, total)
    ci = stats.binomtest(hits, total).proportion_ci(method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high))


def test_dom_hand_computed() -> None:
    r = metrics.dom([0.8, 0.9], [0.5, 0.6, 0.7])
    assert r.dom == pytest.approx(0.25)
    assert (r.mean_a, r.mean_b) == pytest.approx((0.85, 0.6))
    assert r.std_a == pytest.approx(math.sqrt(0.005))
    assert r.std_b == pytest.approx(0.1)
    # C(5, 2) = 10 splits of the pooled 5 values into 2 + 3 (total 3.5). A pair with sum s
    # gives |s/2 - (3.5 - s)/3| = |5s - 7|/6, which is >= 0.25 iff s >= 1.7 or s <= 1.1.
    # Pair sums: 0.8+0.9 = 1.7 (the observed split), 0.5+0.6 = 1.1 (its mirror: 0.55 vs
    # 0.8, also 0.25 apart); the other 8 pairs sum to 1.2 .. 1.6 (e.g. {0.7, 0.9}: 0.8 vs
    # 0.633, 0.167 apart). 2 of 10 splits: p = 0.2, twice the smallest possible 1/10.
    assert r.p_value == pytest.approx(0.2)
    assert r.low <= r.dom <= r.high


def test_dom_permutation_p_value_counts_ties_and_mirrors() -> None:
    # a = {1, 2, 6} vs b = {3, 4, 5}: observed |3 - 4| = 1. C(6, 3) = 20 splits of 1..6
    # (total 21); a triple with sum s gives |s/3 - (21 - s)/3| = |2s - 21|/3 >= 1 iff s <= 9
    # or s >= 12. Triples of 1..6 by sum: 6: 1, 7: 1, 8: 2, 9: 3 (126, 135, 234),
    # 10: 3, 11: 3, 12: 3 (156, 246, 345), 13: 2, 14: 1, 15: 1. So 7 + 7 = 14 of 20.
    r = metrics.dom([1, 2, 6], [3, 4, 5])
    assert r.dom == 1.0
    assert r.p_value == pytest.approx(14 / 20)
    # the docstring's example is as extreme as it gets: only the observed split and its
    # mirror reach 0.05, so p = 2/20, the smallest possible
    assert metrics.dom([0.85, 0.86, 0.84], [0.80, 0.79, 0.81]).p_value == pytest.approx(0.1)


def test_dom_identical_sets_and_sampled_permutations() -> None:
    r = metrics.dom([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    assert r.dom == 0 and r.p_value == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 30), rng.normal(3, 1, 30)
    r = metrics.dom(a, b, permutations=2000)
    assert r.p_value < 0.01
    assert r.dom == pytest.approx(abs(a.mean() - b.mean()))
    r = metrics.dom(a, b, permutations=None, bootstrap=None)
    assert math.isnan(r.p_value) and math.isnan(r.low)
    with pytest.raises(InvalidArgumentError, match="scores_b: expected at least one finite score"):
        metrics.dom([1.0], [])


@pytest.mark.parametrize(("sigma", "size"), [(1.0, 11), (2.0, 11), (0.7, 5), (1.5, 7)])
def test_smooth_matches_scipy_mirror(sigma: float, size: int) -> None:
    maps = torch.rand(3, 1, 17, 13, dtype=torch.float64)
    ours = metrics.smooth(maps, sigma, size)
    radius = size // 2
    for n in range(3):
        expected = ndimage.gaussian_filter(
            maps[n, 0].numpy(), sigma, mode="mirror", truncate=radius / sigma
        )
        np.testing.assert_allclose(ours[n, 0].numpy(), expected, rtol=1e-10, atol=1e-12)
    assert ours.shape == maps.shape


def test_smooth_3d_matches_scipy() -> None:
    maps = torch.rand(2, 9, 10, 11, dtype=torch.float64)
    ours = metrics.smooth(maps, 1.0, 5)
    for n in range(2):
        expected = ndimage.gaussian_filter(maps[n].numpy(), 1.0, mode="mirror", truncate=2.0)
        np.testing.assert_allclose(ours[n].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_smooth_errors() -> None:
    with pytest.raises(ShapeError, match="reflection padding of 5 needs every spatial size > 5"):
        metrics.smooth(torch.rand(1, 1, 5, 40))
    with pytest.raises(InvalidArgumentError, match="kernel_size: expected an odd positive int"):
        metrics.smooth(torch.rand(1, 1, 40, 40), kernel_size=4)
    with pytest.raises(InvalidArgumentError, match="sigma: expected a finite number > 0"):
        metrics.smooth(torch.rand(1, 1, 40, 40), sigma=0)


def test_rank_correlation_matches_scipy() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (3, 1, 6, 6), generator=gen).float()  # many ties
    b = a + torch.rand(3, 1, 6, 6, generator=gen) * 3
    ours = metrics.rank_correlation(a, b)
    for n in range(3):
        expected = stats.spearmanr(a[n].flatten().numpy(), b[n].flatten().numpy()).statistic
        assert ours[n].item() == pytest.approx(expected)


def test_dom_interval_is_the_percentile_interval_of_resampled_differences() -> None:
    """The bootstrap of the DoM draws each set's rows with the metrics' one resampler
    (seed for the first set, seed + 1 for the second); the interval is the percentile
    interval of the resampled differences, computed here draw by draw."""
    from normgrad.metrics._bootstrap import resample_rows

    a, b = [0.9, 0.7, 0.95, 0.8, 0.85], [0.6, 0.75, 0.5, 0.65]
    draws, seed = 400, 7
    rows_a = resample_rows(len(a), draws, seed, torch.device("cpu")).tolist()
    rows_b = resample_rows(len(b), draws, seed + 1, torch.device("cpu")).tolist()
    diffs = sorted(
        abs(sum(a[i] for i in ra) / len(a) - sum(b[i] for i in rb) / len(b))
        for ra, rb in zip(rows_a, rows_b)
    )

    def percentile(q: float) -> float:  # linear interpolation between order statistics
        at = q * (len(diffs) - 1)
        lo = math.floor(at)
        return diffs[lo] + (at - lo) * (diffs[min(lo + 1, len(diffs) - 1)] - diffs[lo])

    r = metrics.dom(a, b, bootstrap=draws, confidence=0.9, seed=seed)
    assert (r.low, r.high) == pytest.approx((percentile(0.05), percentile(0.95)), abs=1e-12)
    assert r.low <= r.dom <= r.high
