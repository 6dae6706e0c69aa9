"""CheXlocalize's protocol and the localisation AUPRC against literal references
(``tests/reference/localization.py``) and the peers (OpenCV's Otsu, scikit-learn's average
precision), in float64; empty and full masks, constant maps, ties and volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from normgrad import metrics
from normgrad._errors import ArgumentTypeError, InvalidArgumentError, NormGradError, ShapeError
from normgrad.metrics._bootstrap import resample_rows

from .conftest import examples, requires_cuda
from .reference import localization as ref

SHAPES = st.sampled_from([(5, 6), (7, 4), (3, 4, 5), (1, 9)])


@st.composite
def maps_and_masks(draw: st.DrawFn, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps with ties (few distinct values) or without, masks empty, full or random."""
    shape = draw(SHAPES)
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    levels = draw(st.sampled_from([2, 4, 0]))
    maps = torch.rand(n, *shape, generator=g, dtype=torch.float64)
    if levels:
        maps = torch.floor(maps * levels) / levels  # ties
    masks = torch.rand(n, *shape, generator=g) < draw(st.floats(0.0, 1.0))
    kind = draw(st.sampled_from(["random", "empty", "full", "constant"]))
    if kind == "empty":
        masks[0] = False
    elif kind == "full":
        masks[0] = True
    elif kind == "constant":
        maps[0] = 0.5
    return maps, masks


def _equal_nan(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-12), (a, b)


@given(maps_and_masks())
@examples(30)
def test_iou_and_hit_rate_match_the_reference(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    maps, masks = data
    predicted = metrics.binarize(maps, 0.5)
    _equal_nan(
        metrics.iou(predicted, masks).tolist(), [ref.iou(p, m) for p, m in zip(predicted, masks)]
    )
    _equal_nan(metrics.hit_rate(maps, masks).tolist(), [ref.hit(s, m) for s, m in zip(maps, masks)])


@given(maps_and_masks(), st.sampled_from([0.0, 0.25, 0.5, 0.7]))
@examples(30)
def test_fixed_threshold_matches_the_reference(
    data: tuple[torch.Tensor, torch.Tensor], threshold: float
) -> None:
    maps, _ = data
    expected = torch.stack([ref.min_max(m) > threshold for m in maps])
    assert torch.equal(metrics.binarize(maps, threshold), expected)
    per_map = torch.tensor([threshold, 1.0, 0.0], dtype=torch.float64)
    expected[1] = False
    expected[2] = torch.stack([ref.min_max(maps[2]) > 0])
    assert torch.equal(metrics.binarize(maps, per_map), expected)


@given(maps_and_masks())
@examples(30)
def test_otsu_matches_the_reference(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    maps, _ = data
    expected = torch.stack([ref.otsu_mask(m) for m in maps])
    assert torch.equal(metrics.binarize(maps, "otsu"), expected)


@given(st.integers(0, 2**16), st.sampled_from([(32, 32), (17, 40), (64, 48)]))
@examples(20)
def test_otsu_matches_opencv_and_scikit_image(seed: int, shape: tuple[int, int]) -> None:
    cv2 = pytest.importorskip("cv2")
    from skimage.filters import threshold_otsu

    g = torch.Generator().manual_seed(seed)
    blobs = torch.nn.functional.avg_pool2d(
        torch.rand(2, 1, *shape, generator=g, dtype=torch.float64), 5, 1, 2
    )[:, 0]
    ours = metrics.binarize(blobs, "otsu")
    for m, mask in zip(metrics._binarize.min_max(blobs), ours):  # CheXlocalize's levels
        levels = np.floor(m.numpy() * 255).astype(np.uint8)
        _, theirs = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert np.array_equal(theirs > 0, mask.numpy())
        assert np.array_equal(levels > threshold_otsu(levels), mask.numpy())  # skimage's


@given(maps_and_masks(n=2), st.sampled_from([1, 3, 5]))
@examples(15)
def test_box_smoothing_matches_the_reference(
    data: tuple[torch.Tensor, torch.Tensor], size: int
) -> None:
    maps, _ = data
    expected = torch.stack([ref.box_smooth(m, size) for m in maps])
    torch.testing.assert_close(metrics._binarize.box_smooth(maps, size), expected)
    cut = 0.5031415926  # no ratio of the tied levels' small sums: rounding cannot flip it
    smoothed = torch.stack([ref.min_max(ref.box_smooth(m, size)) > cut for m in maps])
    assert torch.equal(metrics.binarize(maps, cut, smoothing=size), smoothed)


def test_box_smoothing_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    maps = torch.rand(1, 9, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theirs = cv2.boxFilter(maps[0].numpy(), -1, (5, 5))
    np.testing.assert_allclose(metrics._binarize.box_smooth(maps, 5)[0].numpy(), theirs)


@given(maps_and_masks())
@examples(40)
def test_auprc_matches_the_reference_and_scikit_learn(
    data: tuple[torch.Tensor, torch.Tensor],
) -> None:
    from sklearn.metrics import average_precision_score

    maps, masks = data
    result = metrics.localization_auprc(maps, masks, resamples=0)
    expected = [ref.average_precision(s, m) for s, m in zip(maps, masks)]
    _equal_nan(result.values.tolist(), expected)
    for value, s, m in zip(result.values.tolist(), maps, masks):
        if m.any():
            assert value == pytest.approx(
                average_precision_score(m.flatten().numpy(), s.flatten().numpy()), abs=1e-12
            )


def test_auprc_of_full_masks_constant_maps_and_volumes() -> None:
    maps = torch.zeros(3, 1, 4, 5, 6)
    maps[0, 0, 1, 2, 3] = 1
    masks = torch.zeros(3, 4, 5, 6, dtype=torch.bool)
    masks[0, 1, 2, 3] = True
    masks[1] = True
    masks[2, 0] = True
    values = metrics.localization_auprc(maps, masks).values.tolist()
    assert values == [1.0, 1.0, pytest.approx(30 / 120)]


def test_hit_rate_reads_boxes_and_constant_maps_miss() -> None:
    maps = torch.zeros(2, 1, 8, 8)
    maps[0, 0, 2, 3] = 1
    boxes = [torch.tensor([[3, 2, 4, 4]]), torch.tensor([[0, 0, 7, 7]])]
    assert metrics.hit_rate(maps, boxes).tolist() == [1.0, 0.0]


def test_iou_of_empty_masks_is_not_scored() -> None:
    empty = torch.zeros(2, 3, 3, dtype=torch.bool)
    full = torch.ones(2, 3, 3, dtype=torch.bool)
    assert metrics.iou(empty, full).tolist() == [0.0, 0.0]
    assert all(math.isnan(v) for v in metrics.iou(empty, empty).tolist())
    assert metrics.iou(full, full).tolist() == [1.0, 1.0]


@given(st.integers(0, 2**16), st.integers(1, 9), st.sampled_from([1, 3]))
@examples(25)
def test_bootstrap_matches_a_loop_over_the_same_resamples(seed: int, n: int, k: int) -> None:
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, k, generator=g, dtype=torch.float64)
    values[torch.rand(n, k, generator=g) < 0.3] = float("nan")
    result = metrics.bootstrap_mean(values, resamples=50, confidence=0.9, seed=seed)
    rows = resample_rows(n, 50, seed, torch.device("cpu"))
    for column in range(k):
        means = ref.mean_of_resamples(values[:, column], rows)
        kept = [m for m in means if not math.isnan(m)]
        scored = [v for v in values[:, column].tolist() if not math.isnan(v)]
        mean = sum(scored) / len(scored) if scored else float("nan")
        low, high = np.quantile(kept, [0.05, 0.95]).tolist() if kept else [math.nan] * 2
        got = [float(result.mean[column]), float(result.low[column]), float(result.high[column])]
        _equal_nan(got, [mean, low, high])


def test_bootstrap_is_seeded_and_pooled() -> None:
    values = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 1.0]])
    a = metrics.bootstrap_mean(values, seed=3)
    b = metrics.bootstrap_mean(values, seed=3)
    assert torch.equal(a.low, b.low) and torch.equal(a.high, b.high)
    pooled = metrics.bootstrap_mean(values, pooled=True)
    assert float(pooled.mean) == pytest.approx(4 / 5)
    assert pooled.mean.shape == ()


@given(st.integers(0, 2**16))
@examples(6)
def test_thresholds_and_gates_tuned_on_one_split_match_the_reference(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(8, 6, 6, generator=g, dtype=torch.float64)
    masks = torch.rand(8, 6, 6, generator=g) < 0.4
    masks[[1, 5]] = False
    classes = [0, 1, 0, 1, 0, 1, 0, 1]
    prob = torch.rand(8, generator=g, dtype=torch.float64)
    tuned = metrics.tune_thresholds(maps, masks, torch.tensor(classes), prob)
    thresholds, gates = ref.tune(
        maps,
        masks,
        classes,
        prob.tolist(),
        metrics._chexlocalize.THRESHOLDS,
        metrics._chexlocalize.CUTOFFS,
    )
    assert tuned.thresholds.tolist() == thresholds
    assert tuned.gates is not None and tuned.gates.tolist() == gates
    # applied to another split: the masks are the reference's per-class thresholds, gated
    other = torch.rand(8, 6, 6, generator=g, dtype=torch.float64)
    other_prob = torch.rand(8, generator=g, dtype=torch.float64)
    result = metrics.chexlocalize(
        other,
        masks,
        torch.tensor(classes),
        other_prob,
        thresholds=tuned.thresholds,
        gates=tuned.gates,
        resamples=0,
    )
    for i, c in enumerate(classes):
        expected = ref.min_max(other[i]) > thresholds[c]
        if other_prob[i] <= gates[c]:
            expected = torch.zeros_like(expected)
        assert torch.equal(result.masks[i], expected)
        _equal_nan([float(result.miou.values[i])], [ref.iou(expected, masks[i])])


def test_chexlocalize_reports_true_positives_apart_and_per_class() -> None:
    maps = torch.zeros(4, 1, 8, 8)
    maps[:, 0, :2] = 1
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[0, :4] = True  # IoU 0.5, hit
    masks[1, 6:] = True  # IoU 0, miss
    # 2: no ground truth, a prediction: IoU 0, no hit scored; 3 the same
    result = metrics.chexlocalize(
        maps, masks, torch.tensor([0, 0, 1, 1]), images=torch.tensor([0, 1, 0, 1])
    )
    assert result.miou.values.tolist() == [0.5, 0.0, 0.0, 0.0]
    assert result.miou.per_class.mean.tolist() == [0.25, 0.0]
    assert float(result.miou.overall.mean) == 0.125
    _equal_nan(result.miou_true_positive.values.tolist(), [0.5, 0.0, math.nan, math.nan])
    _equal_nan(result.hit_rate.values.tolist(), [1.0, 0.0, math.nan, math.nan])
    gated = metrics.chexlocalize(
        maps,
        masks,
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([0.9, 0.9, 0.1, 0.1]),
        gates=torch.tensor([0.5, 0.5]),
    )
    _equal_nan(gated.miou.values.tolist(), [0.5, 0.0, math.nan, math.nan])
    low, high = result.miou.overall.low, result.miou.overall.high
    assert 0 <= float(low) <= 0.125 <= float(high) <= 0.5


def test_errors_name_the_argument() -> None:
    maps = torch.rand(2, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    with pytest.raises(NormGradError, match="threshold"):
        metrics.binarize(maps, "mean")
    with pytest.raises(NormGradError, match="threshold"):
        metrics.binarize(maps, 1.5)
    with pytest.raises(NormGradError, match="masks_b"):
        metrics.iou(masks, masks[:1])
    with pytest.raises(NormGradError, match="classes"):
        metrics.chexlocalize(maps, masks, torch.tensor([0.0, 1.0]))
    with pytest.raises(NormGradError, match="probabilities"):
        metrics.chexlocalize(maps, masks, torch.tensor([0, 1]), gates=torch.zeros(2))


def test_maps_with_nan_are_refused() -> None:
    maps = torch.rand(2, 6, 6)
    maps[1, 2, 2] = float("nan")
    masks = torch.ones(2, 6, 6, dtype=torch.bool)
    for call in (
        lambda: metrics.binarize(maps),
        lambda: metrics.localization_auprc(maps, masks),
        lambda: metrics.hit_rate(maps, masks),
        lambda: metrics.map_similarity(maps, maps, "ssim"),
    ):
        with pytest.raises(NormGradError, match="NaN"):
            call()


@requires_cuda
def test_on_a_cuda_device_the_values_are_the_cpus() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 1, 16, 16, generator=g, dtype=torch.float64)
    masks = torch.rand(4, 16, 16, generator=g) < 0.3
    classes = torch.tensor([0, 1, 0, 1])
    cuda = torch.device("cuda")
    for run in (
        lambda m, k: metrics.binarize(m, "otsu", smoothing=3),
        lambda m, k: metrics.iou(metrics.binarize(m), k),
        lambda m, k: metrics.hit_rate(m, k),
        lambda m, k: metrics.localization_auprc(m, k).values,
        lambda m, k: metrics.map_similarity(m, m.flip(-1), "ssim"),
        lambda m, k: metrics.chexlocalize(m, k, classes.to(m.device)).miou.per_class.low,
    ):
        here, there = run(maps, masks), run(maps.to(cuda), masks.to(cuda))
        assert there.device.type == "cuda"
        torch.testing.assert_close(there.cpu(), here, equal_nan=True)


def test_per_class_settings_are_checked() -> None:
    maps = torch.rand(2, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    classes = torch.tensor([0, 1])
    with pytest.raises(NormGradError, match="threshold: expected thresholds in"):
        metrics.binarize(maps, torch.tensor([0.5, 1.5]))
    with pytest.raises(NormGradError, match=r"thresholds: expected a tensor \(2,\)"):
        metrics.chexlocalize(maps, masks, classes, thresholds=torch.tensor([0.5]))
    with pytest.raises(NormGradError, match=r"gates: expected a tensor \(3,\)"):
        metrics.chexlocalize(
            maps, masks, classes, torch.rand(2), gates=torch.zeros(2), num_classes=3
        )


def test_host_reads_per_call() -> None:
    from .dispatch_count import count

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 1, 16, 16, generator=g)
    masks = torch.rand(4, 16, 16, generator=g) < 0.3
    boxes = [torch.tensor([[2, 2, 9, 9]])] * 4
    assert count(lambda: metrics.iou(masks, masks)).sync_count == 0
    for call in (
        lambda: metrics.binarize(maps, "otsu", smoothing=3),
        lambda: metrics.binarize(maps, torch.full((4,), 0.5)),
        lambda: metrics.hit_rate(maps, masks),
        lambda: metrics.hit_rate(maps, boxes),
        lambda: metrics.localization_auprc(maps, masks, resamples=50),
        lambda: metrics.map_similarity(maps, maps.flip(-1), "ssim"),
        lambda: metrics.bootstrap_mean(torch.rand(9, 3), resamples=50),
        lambda: metrics.rank_correlation(maps, maps.flip(-1)),
    ):
        assert count(call).sync_count <= 1
    classes, images = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2])
    # the four scores' tables share their size: the images' count read once when given;
    # the classes' count read when not given
    for call, reads in (
        (lambda: metrics.chexlocalize(maps, masks, classes, num_classes=3, resamples=5), 1),
        (lambda: metrics.chexlocalize(maps, masks, classes, resamples=5), 2),
        (lambda: metrics.chexlocalize(maps, masks, classes, images=images, resamples=5), 3),
    ):
        assert count(call).sync_count <= reads


def test_the_protocol_resamples_images_with_all_their_classes() -> None:
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(6, 10, 10, generator=g, dtype=torch.float64)
    masks = torch.rand(6, 10, 10, generator=g) < 0.4
    classes, images = torch.tensor([0, 1, 0, 1, 0, 1]), torch.tensor([0, 0, 1, 1, 2, 2])
    result = metrics.chexlocalize(maps, masks, classes, images=images, resamples=300, seed=4)
    table = torch.full((3, 2), float("nan"), dtype=torch.float64)
    for i in range(6):  # one row per image, one column per class
        table[int(images[i]), int(classes[i])] = ref.iou(ref.otsu_mask(maps[i]), masks[i])
    rows = resample_rows(3, 300, 4, torch.device("cpu"))
    for column in range(2):
        means = ref.mean_of_resamples(table[:, column], rows)
        low, high = np.quantile([m for m in means if not math.isnan(m)], [0.025, 0.975])
        got = result.miou.per_class
        assert float(got.low[column]) == pytest.approx(low, abs=1e-12)
        assert float(got.high[column]) == pytest.approx(high, abs=1e-12)
    pooled = [
        sum(v for v in vals if not math.isnan(v)) / sum(1 for v in vals if not math.isnan(v))
        for vals in ([float(x) for i in drawn for x in table[i]] for drawn in rows.tolist())
    ]
    low, high = np.quantile(pooled, [0.025, 0.975])
    assert float(result.miou.overall.low) == pytest.approx(low, abs=1e-12)
    assert float(result.miou.overall.high) == pytest.approx(high, abs=1e-12)


def test_per_class_thresholds_are_read_by_each_maps_class() -> None:
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    per_class = torch.tensor([0.2, 0.7])
    classes = torch.tensor([1, 0, 1])
    expected = torch.stack(
        [ref.min_max(m.double()) > float(per_class[c]) for m, c in zip(maps, classes)]
    )
    assert torch.equal(metrics.binarize(maps, per_class, classes=classes), expected)


def test_the_gate_empties_masks_at_or_below_the_cutoff() -> None:
    masks = torch.ones(4, 3, 3, dtype=torch.bool)
    prob = torch.tensor([0.5, 0.51, 0.1, 0.9])
    kept = metrics.gate(masks, prob, torch.tensor([0.5, 0.8]), torch.tensor([0, 0, 1, 1]))
    assert kept.flatten(1).any(dim=1).tolist() == [False, True, False, True]
    assert torch.equal(kept[1], masks[1])
    assert metrics.gate(masks, prob, 0.3).flatten(1).any(dim=1).tolist() == [
        True, True, False, True,
    ]  # fmt: skip
    with pytest.raises(NormGradError, match="cutoffs"):
        metrics.gate(masks, prob, torch.tensor([0.5, 0.8]))


def test_classes_outside_the_classes_are_refused() -> None:
    maps = torch.rand(2, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    with pytest.raises(NormGradError, match=r"classes: expected class indices in \[0, 2\)"):
        metrics.chexlocalize(maps, masks, torch.tensor([0, 2]), num_classes=2)
    with pytest.raises(NormGradError, match="classes: expected class indices"):
        metrics.tune_thresholds(maps, masks, torch.tensor([-1, 0]))


def test_class_indices_outside_the_per_class_settings_are_refused() -> None:
    maps = torch.linspace(0, 1, 11).view(1, 1, 11)
    masks = torch.ones(2, 3, 3, dtype=torch.bool)
    prob, cutoffs = torch.tensor([0.5, 0.5]), torch.tensor([0.1, 0.2])
    for bad in (-1, 2):  # -1 once read the last class's setting, 2 was an IndexError
        with pytest.raises(NormGradError, match=r"classes: expected class indices in \[0, 2\)"):
            metrics.binarize(maps, torch.tensor([0.1, 0.9]), classes=torch.tensor([bad]))
        with pytest.raises(NormGradError, match=r"classes: expected class indices in \[0, 2\)"):
            metrics.gate(masks, prob, cutoffs, torch.tensor([0, bad]))


def test_class_checks_are_read_with_the_calls_other_checks() -> None:
    from .dispatch_count import count

    maps, masks = torch.rand(4, 8, 8), torch.ones(4, 8, 8, dtype=torch.bool)
    classes, prob = torch.tensor([0, 1, 1, 0]), torch.rand(4)
    per_class = torch.tensor([0.3, 0.6])
    assert count(lambda: metrics.binarize(maps, per_class, classes=classes)).sync_count <= 1
    assert count(lambda: metrics.gate(masks, prob, per_class, classes)).sync_count <= 1


def test_searched_grids_must_hold_values_in_the_unit_interval() -> None:
    maps = torch.rand(2, 8, 8)
    masks = torch.ones(2, 8, 8, dtype=torch.bool)
    classes = torch.tensor([0, 1])
    for grid in ((1.5,), (), (0.5, float("nan"))):
        with pytest.raises(NormGradError, match="grid: expected"):
            metrics.tune_thresholds(maps, masks, classes, grid=grid)
        with pytest.raises(NormGradError, match="cutoffs: expected"):
            metrics.tune_thresholds(maps, masks, classes, torch.rand(2), cutoffs=grid)


@pytest.mark.parametrize("value", [float("inf"), -float("inf")])
def test_maps_with_an_infinity_are_refused(value: float) -> None:
    maps = torch.rand(2, 6, 6)
    maps[0, 2, 2] = value
    with pytest.raises(NormGradError, match=r"saliency: expected finite maps"):
        metrics.binarize(maps)
    with pytest.raises(NormGradError, match=r"saliency: expected finite maps"):
        metrics.binarize(maps, 0.5, smoothing=3)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_probabilities_outside_the_unit_interval_are_refused(bad: float) -> None:
    maps = torch.rand(2, 8, 8)
    masks = torch.ones(2, 8, 8, dtype=torch.bool)
    classes, prob = torch.tensor([0, 1]), torch.tensor([0.5, bad])
    match = r"probabilities: expected probabilities in \[0, 1\]"
    with pytest.raises(NormGradError, match=match):
        metrics.gate(masks, prob, 0.3)
    with pytest.raises(NormGradError, match=match):
        metrics.tune_thresholds(maps, masks, classes, prob)
    with pytest.raises(NormGradError, match=match):
        metrics.chexlocalize(maps, masks, classes, prob, gates=torch.zeros(2))


def test_two_pairs_of_one_image_and_class_are_refused() -> None:
    maps = torch.rand(4, 8, 8)
    masks = torch.ones(4, 8, 8, dtype=torch.bool)
    classes = torch.tensor([0, 1, 1, 0])
    with pytest.raises(NormGradError, match="pairs 1 and 2 both of image 0 and class 1"):
        metrics.chexlocalize(maps, masks, classes, images=torch.tensor([0, 0, 0, 1]))
    ok = metrics.chexlocalize(maps, masks, classes, images=torch.tensor([0, 0, 1, 1]))
    assert ok.miou.values.shape == (4,)


def test_the_images_of_the_pairs_are_checked() -> None:
    """An image index read as anything but a non-negative integer per pair would place a
    pair's score in another image's row (a float truncated, a negative index wrapped)."""
    maps = torch.rand(4, 8, 8)
    masks = torch.ones(4, 8, 8, dtype=torch.bool)
    classes = torch.tensor([0, 1, 1, 0])
    for wrong in ([0, 1, 2, 3], torch.tensor([0.0, 0.5, 1.0, 1.5]), torch.ones(4).bool()):
        with pytest.raises(ArgumentTypeError, match="images: expected the image of each pair"):
            metrics.chexlocalize(maps, masks, classes, images=wrong, resamples=2)
    with pytest.raises(
        ShapeError, match=r"images: expected one image index per pair, shape \(4,\)"
    ):
        metrics.chexlocalize(maps, masks, classes, images=torch.tensor([0, 1]), resamples=2)
    with pytest.raises(InvalidArgumentError, match="images: expected image indices >= 0, got -1"):
        metrics.chexlocalize(maps, masks, classes, images=torch.tensor([0, 1, -1, 2]), resamples=2)
    result = metrics.chexlocalize(
        maps, masks, classes, images=torch.tensor([0, 1, 3, 2], dtype=torch.int32), resamples=2
    )
    assert result.miou.values.shape == (4,)
