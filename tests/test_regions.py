"""Regions given per sample: one rule for every metric (forms, errors), and regions wholly
outside their map (warned about, counted) against literal references."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from normgrad import ArgumentTypeError, InvalidArgumentError, ShapeError, metrics
from normgrad.metrics import Box

from .conftest import examples, requires_cuda
from .reference.regions import reference_outside

# ---------------------------------------------------------------------------------------
# every metric that takes regions, called alike


def _pointing(maps: torch.Tensor, regions: Any) -> Any:
    return metrics.pointing_game(maps, regions, tolerance=1)


def _energy(maps: torch.Tensor, regions: Any) -> Any:
    return metrics.energy_pointing_game(maps, regions)


def _multi(maps: torch.Tensor, regions: Any) -> Any:
    return metrics.multi_pointing_game(maps, regions, min_distance=1)


def _froc(maps: torch.Tensor, regions: Any) -> Any:
    result = metrics.froc(maps, regions, k=3, min_distance=1)
    return torch.tensor([result.froc, result.objects, result.found])


def _prepare(maps: torch.Tensor, regions: Any) -> Any:
    return metrics.prepare_regions(regions, maps.shape[:1] + maps.shape[2:]).to_masks()


def _random(maps: torch.Tensor, regions: Any) -> Any:
    return metrics.random_point_hit_rate(regions, maps.shape[2:], tolerance=1)


METRICS: dict[str, Callable[[torch.Tensor, Any], Any]] = {
    "pointing_game": _pointing,
    "energy_pointing_game": _energy,
    "multi_pointing_game": _multi,
    "froc": _froc,
    "prepare_regions": _prepare,
    "random_point_hit_rate": _random,
}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(((a == b) | (a.double().isnan() & b.double().isnan())).all())


# ---------------------------------------------------------------------------------------
# forms: one rule


def forms(boxes: list[list[list[float]]]) -> dict[str, Any]:
    """The same boxes of each sample in every form the rule accepts."""
    out: dict[str, Any] = {
        "tensors": [torch.tensor(b, dtype=torch.float64).reshape(-1, 4) for b in boxes],
        "arrays": [np.array(b, dtype=np.float64).reshape(-1, 4) for b in boxes],
        "lists": [[list(row) for row in b] for b in boxes],
        "tuples": [tuple(tuple(row) for row in b) for b in boxes],
        "row tensors": [[torch.tensor(row) for row in b] for b in boxes],
        "row arrays": [[np.array(row) for row in b] for b in boxes],
        "int tensors": None,
    }
    if all(float(v).is_integer() for b in boxes for row in b for v in row):
        out["int tensors"] = [torch.tensor(b, dtype=torch.long).reshape(-1, 4) for b in boxes]
    else:
        del out["int tensors"]
    most = max(len(b) for b in boxes)
    padded = torch.full((len(boxes), max(most, 1), 4), math.nan, dtype=torch.float64)
    for i, b in enumerate(boxes):
        if b:
            padded[i, : len(b)] = torch.tensor(b, dtype=torch.float64)
    out["padded"] = padded
    out["padded array"] = padded.numpy()
    samples = np.empty(len(boxes), dtype=object)  # one array per sample, e.g. from pandas
    for i, b in enumerate(boxes):
        samples[i] = np.array(b, dtype=np.float64).reshape(-1, 4)
    out["array of arrays"] = samples
    out["nan rows"] = [
        torch.cat(
            [torch.tensor(b, dtype=torch.float64).reshape(-1, 4), torch.full((1, 4), math.nan)]
        )
        for b in boxes
    ]
    if all(len(b) == 1 for b in boxes):
        out["flat lists"] = [list(b[0]) for b in boxes]
        out["1-d tensors"] = [torch.tensor(b[0]) for b in boxes]
    return out


coordinate = st.integers(-4, 12).map(lambda v: v / 2)


@st.composite
def box_lists(draw: st.DrawFn, n: int) -> list[list[list[float]]]:
    out = []
    for _ in range(n):
        rows = []
        for _ in range(draw(st.integers(0, 3))):
            x1, x2 = sorted(draw(coordinate) for _ in range(2))
            y1, y2 = sorted(draw(coordinate) for _ in range(2))
            rows.append([x1, y1, x2, y2])
        out.append(rows)
    return out


@given(st.data(), st.sampled_from(sorted(METRICS)))
@examples(40)
def test_every_form_gives_every_metric_the_same_result(data: st.DataObject, name: str) -> None:
    n = data.draw(st.integers(1, 3))
    maps = torch.tensor(
        data.draw(st.lists(st.integers(0, 3), min_size=n * 30, max_size=n * 30)),
        dtype=torch.float32,
    ).reshape(n, 1, 5, 6)
    boxes = data.draw(box_lists(n))
    metric = METRICS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some boxes lie outside: warned, tested below
        expected = metric(maps, forms(boxes)["tensors"])
        for form, regions in forms(boxes).items():
            assert _same(metric(maps, regions), expected), form
        # as shapes (rasterised): the same pixels
        if name != "random_point_hit_rate":
            shapes = [[Box(*row) for row in b] for b in boxes]
            assert _same(metric(maps, shapes), expected)


def test_numpy_boxes_in_the_detection_metrics() -> None:
    # numpy boxes were taken by the pointing games and refused by FROC and multi
    maps = torch.zeros(2, 1, 8, 8)
    maps[0, 0, 2, 2], maps[1, 0, 6, 6] = 1.0, 1.0
    boxes = [np.array([[1, 1, 3, 3]]), np.zeros((0, 4))]
    assert metrics.multi_pointing_game(maps, boxes).tolist()[0] == 1.0
    result = metrics.froc(maps, boxes, k=1)
    assert (result.objects, result.found) == (1, 1)
    mixed = [[Box(1, 1, 3, 3)], np.array([[5, 5, 7, 7]])]
    assert metrics.pointing_game(maps, mixed, 0).tolist() == [1.0, 1.0]


BAD_FORMS: list[tuple[str, Any, type[Exception], str]] = [
    ("dict", [[{"x": 1}], []], ArgumentTypeError, r"regions\[0\]\[0\]: expected a box of 4 "),
    ("string", [[], ["box"]], ArgumentTypeError, r"regions\[1\]\[0\]: expected a box of 4 "),
    ("string sample", ["abc", []], ArgumentTypeError, r"regions\[0\]: expected boxes "),
    ("dict sample", [{"a": 1}, []], ArgumentTypeError, r"regions\[0\]: expected boxes "),
    ("short row", [[[1, 2, 3]], []], ArgumentTypeError, r"regions\[0\]\[0\]: expected a box "),
    (
        "mixed",
        [[Box(0, 0, 1, 1), (0, 0, 1, 1)], []],
        ArgumentTypeError,
        r"regions\[0\]\[1\]: expected a Box, Ellipse or Polygon like the other regions",
    ),
    (
        "bool boxes",
        [torch.ones(1, 4, dtype=torch.bool), []],
        ArgumentTypeError,
        r"regions\[0\]: expected box coordinates as real numbers, got dtype torch.bool",
    ),
    (
        "ragged array",
        [np.array([[1, 2, 3, 4], [1]], dtype=object), []],
        ArgumentTypeError,
        r"regions\[0\]: expected box coordinates as numbers",
    ),
    (
        "wide",
        [torch.zeros(1, 5), []],
        ShapeError,
        r"regions\[0\]: expected boxes of shape \(K, 4\)",
    ),
    (
        "min above max",
        [[], np.array([[0, 0, 1, 1], [3, 0, 1, 1]])],
        InvalidArgumentError,
        r"regions\[1\]: expected finite boxes .* got regions\[1\]\[1\] = \[3.0, 0.0, 1.0, 1.0\]",
    ),
    (
        "infinite",
        [[[0, 0, math.inf, 1]], []],
        InvalidArgumentError,
        r"regions\[0\]: expected finite boxes .* got regions\[0\]\[0\] = \[0.0, 0.0, inf, 1.0\]",
    ),
    (
        "partly NaN",
        [torch.tensor([[math.nan, 0, 1, 1]]), []],
        InvalidArgumentError,
        r"regions\[0\]: expected finite boxes",
    ),
]


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize(("form", "regions", "error", "message"), BAD_FORMS)
def test_every_metric_refuses_a_bad_form_alike(
    name: str, form: str, regions: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        METRICS[name](torch.rand(2, 1, 6, 6), regions)


def test_numpy_masks_are_masks() -> None:
    maps = torch.zeros(2, 1, 6, 6)
    maps[:, 0, 2, 2] = 1.0
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, 2, 2] = masks[1, 5, 5] = True
    for name in ("pointing_game", "energy_pointing_game", "prepare_regions"):
        expected = METRICS[name](maps, masks)
        assert _same(METRICS[name](maps, masks.numpy()), expected), name
    for name in ("multi_pointing_game", "froc"):
        with pytest.raises(ArgumentTypeError, match="a mask merges touching objects"):
            METRICS[name](maps, masks.numpy())
    with pytest.raises(ShapeError, match="regions: expected maps of at least one pixel"):
        metrics.prepare_regions([torch.zeros(0, 4)], (1, 0, 5))


def test_a_box_and_the_regions_share_one_check() -> None:
    # the same rule, the same words, for Box(...) and for boxes as numbers
    with pytest.raises(InvalidArgumentError, match=r"Box: expected finite boxes .* min <= max"):
        Box(0, 0, math.nan, 1)
    with pytest.raises(
        InvalidArgumentError, match=r"Ellipse: expected finite boxes .*from_corners"
    ):
        metrics.Ellipse(2, 0, 1, 1)
    with pytest.raises(InvalidArgumentError, match=r"regions\[0\]: expected finite boxes"):
        metrics.prepare_regions([[[0, 0, math.nan, 1]]], (1, 4, 4))
    # a volume's boxes: z too
    with pytest.raises(
        InvalidArgumentError, match=r"regions\[0\]: expected finite boxes \(xmin, ymin, zmin, "
    ):
        metrics.froc(torch.rand(1, 3, 4, 4), [[[0, 0, 2, 1, 1, 1]]])


# ---------------------------------------------------------------------------------------
# other arguments: FROC's probabilities, maps without pixels


@pytest.mark.parametrize("bad", [-1.0, 1.5, math.nan, math.inf])
def test_froc_refuses_probabilities_outside_zero_one(bad: float) -> None:
    maps = torch.rand(2, 1, 6, 6)
    boxes = [[[0, 0, 2, 2]], []]
    with pytest.raises(InvalidArgumentError, match=r"probabilities: expected values in \[0, 1\]"):
        metrics.froc(maps, boxes, probabilities=torch.tensor([0.5, bad]))
    with pytest.raises(ShapeError, match=r"probabilities: expected 2 numbers in \[0, 1\]"):
        metrics.froc(maps, boxes, probabilities=[0.5])
    # the bounds themselves are probabilities
    metrics.froc(maps, boxes, probabilities=[0.0, 1.0])


@pytest.mark.parametrize("shape", [(2, 1, 0, 5), (2, 1, 5, 0), (1, 2, 0, 3), (0, 1, 0, 4)])
def test_maps_without_pixels_raise_a_shape_error(shape: tuple[int, ...]) -> None:
    maps = torch.zeros(shape)
    n = shape[0]
    boxes = [torch.zeros(0, 2 * (len(shape) - 2))] * n
    calls: list[Callable[[], Any]] = [
        lambda: metrics.peaks(maps, 2),
        lambda: metrics.points(maps),
        lambda: metrics.pointing_game(maps, boxes),
        lambda: metrics.energy_pointing_game(maps, boxes),
        lambda: metrics.multi_pointing_game(maps, boxes),
        lambda: metrics.froc(maps, boxes),
    ]
    for call in calls:
        with pytest.raises(ShapeError, match=r"saliency: expected maps of at least one pixel"):
            call()


# ---------------------------------------------------------------------------------------
# regions wholly outside their map


def outside_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "wholly outside" in str(w.message)]


def named_samples(message: str) -> list[int]:
    inside = message.split("samples [", 1)[1].split("]", 1)[0]
    return [int(v) for v in inside.split(", ")]


@given(st.data())
@examples(60)
def test_outside_regions_are_named_and_counted_as_the_reference(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 6))
    height, width = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    boxes = data.draw(box_lists(n))
    maps = torch.rand(n, 1, height, width)
    far = [any(reference_outside(row, (height, width)) for row in b) for b in boxes]
    covers = [
        any(
            math.ceil(max(r[0], 0)) <= math.floor(min(r[2], width - 1))
            and math.ceil(max(r[1], 0)) <= math.floor(min(r[3], height - 1))
            for r in b
        )
        for b in boxes
    ]
    for name in ("pointing_game", "energy_pointing_game", "multi_pointing_game", "froc"):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            METRICS[name](maps, forms(boxes)["tensors"])
        said = outside_warnings(record)
        if not any(far):
            assert not said, name
            continue
        assert len(said) == 1, name
        assert named_samples(said[0]) == [i for i, f in enumerate(far) if f], name
        assert f"map of {width} x {height} pixels" in said[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = metrics.prepare_regions(boxes, (n, height, width))
        game = metrics.PointingGame(tolerance=1)
        game.update(maps, forms(boxes)["nan rows"])
        result = metrics.froc(maps, [[Box(*r) for r in b] for b in boxes], k=2)
    assert prepared.outside_samples().tolist() == far
    assert game.compute().outside == sum(f and not c for f, c in zip(far, covers))
    assert game.compute().skipped == sum(not c for c in covers)
    assert result.outside == sum(reference_outside(r, (height, width)) for b in boxes for r in b)


@pytest.mark.parametrize("n", [3, 40])
def test_boxes_of_the_image_at_ten_times_the_map(n: int) -> None:
    # maps of 14 x 14 (a network's layer) with boxes drawn on the 140 x 140 image, all of
    # them beyond the map's last pixel: every image would be dropped without a word
    torch.manual_seed(0)
    maps = torch.rand(n, 1, 14, 14)
    corner = torch.randint(20, 100, (n, 2)).double()
    boxes = [torch.cat([c, c + 30])[None] for c in corner]
    with pytest.warns(UserWarning, match="wholly outside their map of 14 x 14 pixels") as record:
        game = metrics.PointingGame()
        results = game.update(maps, boxes)
    (message,) = outside_warnings(record.list)
    first = boxes[0][0].tolist()
    assert (
        f"regions[0][0] spans x {first[0]:g} to {first[2]:g}, y {first[1]:g} to {first[3]:g}"
        in (message)
    )
    assert "rescale them to the map" in message
    assert named_samples(message) == list(range(min(n, 10)))
    assert (f"and {n - 10} more" in message) == (n > 10)
    assert bool(results.isnan().all())
    summary = game.compute()
    assert (summary.total, summary.skipped, summary.outside) == (0, n, n)
    assert str(summary).endswith(f"(0/0, 95% Wilson; {n} not counted: regions outside the map)")
    # the objects one by one, and the union of shapes: warned and counted too
    with pytest.warns(UserWarning, match="wholly outside"):
        assert metrics.froc(maps, boxes).outside == n
    with pytest.warns(UserWarning, match="wholly outside"):
        shapes = [[Box(*b[0].tolist())] for b in boxes]
        assert bool(metrics.energy_pointing_game(maps, shapes).isnan().all())
    with pytest.warns(UserWarning, match="wholly outside"):
        assert bool(metrics.multi_pointing_game(maps, boxes).isnan().all())
    # rescaled to the map, nothing is said and every image counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = [b / 10 for b in boxes]
        game.reset()
        game.update(maps, scaled)
        assert (game.compute().total, game.compute().outside) == (n, 0)


def test_what_is_not_outside() -> None:
    maps = torch.rand(4, 1, 6, 6)
    boxes = [
        torch.tensor([[4.0, 4.0, 40.0, 40.0]]),  # partly inside: clipped
        torch.tensor([[2.2, 2.2, 2.8, 2.8]]),  # between pixel centres, inside the map
        torch.full((2, 4), math.nan),  # padding
        torch.zeros(0, 4),  # no region
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = metrics.prepare_regions(boxes, (4, 6, 6))
        metrics.froc(maps, boxes)
    assert prepared.outside_samples().tolist() == [False] * 4
    # a box ending just before the first pixel centre, or starting just after the last, is
    with pytest.warns(UserWarning, match=r"samples \[0, 1\]"):
        metrics.pointing_game(maps, [[[-3, 0, -0.5, 5]], [[0, 5.5, 5, 9]], [], []])


class _Reads:
    """Counts the values a tensor hands back to Python (each one a wait for the device)."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero")

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def counting(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.count += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, wrapped)
        try:
            yield
        finally:
            monkeypatch.undo()


@pytest.mark.parametrize("outside", [False, True])
def test_boxes_are_checked_with_reads_that_do_not_grow_with_the_batch(
    monkeypatch: pytest.MonkeyPatch, outside: bool
) -> None:
    counts = []
    for n in (4, 400):
        boxes = [torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 4.0, 2.0]])] * n
        if outside:
            boxes = [b * 10 for b in boxes]
        reads = _Reads()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with reads.counting(monkeypatch):
                metrics.prepare_regions(boxes, (n, 8, 8))
        counts.append(reads.count)
    assert counts[0] == counts[1], counts
    assert counts[0] <= (6 if outside else 1), counts


def test_outside_counts_merge_and_add() -> None:
    maps = torch.zeros(2, 1, 6, 6)
    maps[:, 0, 1, 1] = 1.0  # sample 1 hits its box
    boxes = [torch.tensor([[60.0, 60.0, 70.0, 70.0]]), torch.tensor([[1.0, 1.0, 2.0, 2.0]])]
    first, second = metrics.PointingGame(), metrics.PointingGame()
    with pytest.warns(UserWarning, match=r"samples \[0\]"):
        first.update(maps, boxes)
        second.update(maps, boxes)
    merged = first.merge(second).compute()
    assert (merged.total, merged.skipped, merged.outside) == (2, 2, 2)
    # results scored elsewhere, with the samples outside from the prepared regions
    with pytest.warns(UserWarning, match=r"samples \[0\]"):
        prepared = metrics.prepare_regions(boxes, (2, 6, 6))
    game = metrics.PointingGame()
    game.add(metrics.pointing_game(maps, prepared), prepared.outside_samples())
    assert (game.hits, game.total, game.skipped, game.outside) == (1, 1, 1, 1)
    game.add(torch.tensor([1.0, math.nan]))  # no samples outside given: none counted
    assert (game.hits, game.total, game.skipped, game.outside) == (2, 2, 2, 1)


@requires_cuda
def test_outside_regions_on_cuda_match_cpu() -> None:
    torch.manual_seed(0)
    maps = torch.rand(6, 1, 14, 14)
    boxes = [torch.tensor([[2.0, 2.0, 6.0, 6.0], [40.0, 40.0, 60.0, 60.0]])] * 3 + [
        torch.tensor([[30.0, 30.0, 50.0, 50.0]])
    ] * 3
    results = {}
    for device in ("cpu", "cuda"):
        with pytest.warns(UserWarning, match=r"samples \[0, 1, 2, 3, 4, 5\]") as record:
            game = metrics.PointingGame()
            hits = game.update(maps.to(device), [b.to(device) for b in boxes])
            prepared = metrics.prepare_regions(boxes, (6, 14, 14), device)
        assert prepared.outside_samples().device.type == device
        results[device] = (
            hits.cpu(),
            prepared.outside_samples().cpu(),
            game.compute().outside,
            outside_warnings(record.list)[0],
        )
    cpu, cuda = results["cpu"], results["cuda"]
    assert _same(cpu[0], cuda[0]) and torch.equal(cpu[1], cuda[1])
    assert cpu[2:] == cuda[2:] == (3, cpu[3])
