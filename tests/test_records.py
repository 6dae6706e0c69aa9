"""Per-image records of an evaluation: content, CSV, and resuming an interrupted run."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import normgrad
from normgrad import metrics
from normgrad._evaluation import plugins

from .conftest import examples
from .dispatch_count import counting
from .models import TinyCNN, seeded

SIZE = 16


def _model() -> torch.nn.Module:
    return seeded(TinyCNN()).double()


def _explainers(model: torch.nn.Module) -> dict[str, normgrad.Explainer]:
    return {
        "NormGrad": normgrad.NormGrad(model, ["conv2", "relu3"], "conv1x1"),
        "Gradient": normgrad.Gradient(model),
    }


def _data(batches: int = 4, batch: int = 3) -> list[tuple[torch.Tensor, torch.Tensor, Any]]:
    gen = torch.Generator().manual_seed(1)
    data = []
    for _ in range(batches):
        x = torch.randn(batch, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, 5, (batch,), generator=gen)
        boxes = []
        for i in range(batch):
            corner = torch.randint(0, SIZE - 5, (1, 2), generator=gen)
            boxes.append(torch.cat([corner, corner + 4], dim=1) if i else torch.zeros(0, 4))
        data.append((x, labels, boxes))
    return data


def _run(data: Any, **kwargs: Any) -> normgrad.EvaluationResult:
    model = _model()
    kwargs = {"tolerance": 2, "smoothing_sigma": 1.0, "progress": False, **kwargs}
    return normgrad.evaluate(model, _explainers(model), data, **kwargs)


def _canon_value(v: Any) -> Any:
    return "nan" if isinstance(v, float) and math.isnan(v) else v


def _canon(result: normgrad.EvaluationResult) -> Any:
    c = _canon_value
    fields = ("method", "accuracy", "low", "high", "hits", "total", "energy", "multi", "froc")
    rows = [tuple(c(getattr(r, f)) for f in fields) for r in result.rows]
    return rows, [tuple(c(v) for v in r) for r in result.records]


def test_records_hold_each_images_point_and_hit() -> None:
    data = _data()
    result = _run(data)
    model = _model()
    methods = [r.method for r in result.rows]
    assert len(result.records) == 12 * len(methods)
    by_key = {(r.image, r.method): r for r in result.records}
    for b, (x, labels, boxes) in enumerate(data):
        for name, explainer in _explainers(model).items():
            for method, saliency in (
                (name, explainer(x, labels)),
                (f"{name} (smoothed)", metrics.smooth(explainer(x, labels), 1.0)),
            ):
                points = metrics.points(saliency)
                hits = metrics.pointing_game(saliency, boxes, 2)
                for i in range(x.shape[0]):
                    record = by_key[str(b * 3 + i), method]
                    assert record.point == tuple(points[i].tolist())
                    assert (math.isnan(record.hit) and i == 0) or record.hit == float(hits[i])
        rates = metrics.random_point_hit_rate(boxes, (SIZE, SIZE), 2)
        for i in range(1, x.shape[0]):
            record = by_key[str(b * 3 + i), "random point"]
            assert record.point is None and record.hit == pytest.approx(float(rates[i]))
        assert by_key[str(b * 3 + 1), "centre map"].point == (7, 7)
    # the table is the records counted
    for row in result.rows:
        counted = [
            r.hit for r in result.records if r.method == row.method and not math.isnan(r.hit)
        ]
        assert row.total == len(counted) == 8
        assert row.hits == pytest.approx(sum(counted))


def test_records_to_csv() -> None:
    result = _run(_data(1))
    rows = list(csv.reader(io.StringIO(result.records_to_csv())))
    assert rows[0] == [
        "image", "method", "hit", "point", "energy", "multi", "objects", "detections",
        "deletion", "insertion", "outside", "distance", "iou", "hit_rate", "auprc",
    ]  # fmt: skip
    assert len(rows) == 1 + len(result.records)
    first = {(r[0], r[1]): r for r in rows[1:]}
    assert first["0", "NormGrad"][2] == ""  # no region: not counted
    assert first["0", "NormGrad"][11] == "" and first["1", "random point"][11] == ""
    assert float(first["1", "NormGrad"][11]) >= 0
    assert first["1", "centre map"][3] == "7 7"
    assert first["1", "random point"][3] == ""
    assert first["1", "NormGrad"][2] in ("0", "1")


class Interrupted:
    """The data of a run stopped (Ctrl-C) after ``stop`` batches."""

    def __init__(self, data: list[Any], stop: int) -> None:
        self.data, self.stop = data, stop

    def __iter__(self) -> Iterator[Any]:
        for step, batch in enumerate(self.data):
            if step == self.stop:
                raise KeyboardInterrupt
            yield batch

    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize("stop", [0, 1, 3])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, stop: int) -> None:
    data = _data()
    whole = _run(data)
    path = tmp_path / "records.csv"
    with pytest.raises(KeyboardInterrupt):
        _run(Interrupted(data, stop), records=path)
    model = _model()
    explained = []
    handle = model.register_forward_pre_hook(lambda m, args: explained.append(args[0].shape[0]))
    try:
        resumed = normgrad.evaluate(
            model, _explainers(model), data, tolerance=2, smoothing_sigma=1.0,
            progress=False, records=path,
        )  # fmt: skip
    finally:
        handle.remove()
    assert _canon(resumed) == _canon(whole)
    assert len(explained) == len(data) - stop  # one pass per batch not yet done
    # the file now holds the whole run, and resuming it again explains nothing
    text = path.read_text()
    assert text.count("\n") == 2 + len(whole.records)
    again = _run(data, records=path)
    assert _canon(again) == _canon(whole)


def test_a_record_cut_off_mid_write_is_done_again(tmp_path: Path) -> None:
    data = _data(2)
    path = tmp_path / "records.csv"
    whole = _run(data, records=path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]) + lines[-3][:5])  # the last image lost two records
    assert _canon(_run(data, records=path)) == _canon(whole)


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    _run(_data(1), records=path)
    with pytest.raises(normgrad.InvalidArgumentError, match="tolerance differ"):
        _run(_data(1), records=path, tolerance=3)
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n")
    with pytest.raises(normgrad.InvalidArgumentError, match="not a normgrad records file"):
        _run(_data(1), records=other)


def test_ids_from_the_data_and_duplicates() -> None:
    data = [(x, y, r, [f"scan-{b}-{i}" for i in range(3)]) for b, (x, y, r) in enumerate(_data(2))]
    result = _run(data)
    assert {r.image for r in result.records} == {
        f"scan-{b}-{i}" for b in range(2) for i in range(3)
    }
    assert [r.hits for r in result.rows] == [r.hits for r in _run(_data(2)).rows]
    with pytest.raises(
        normgrad.InvalidArgumentError, match="scan-0-0, scan-0-1, scan-0-2 given more than once"
    ):
        _run([data[0], data[0]])
    with pytest.raises(normgrad.InvalidArgumentError, match="one id per image"):
        _run([(*data[0][:3], ["a"])])


def test_name_clashes_with_generated_rows_are_refused() -> None:
    model = _model()
    clash = {"a": normgrad.Gradient(model), "a (smoothed)": normgrad.Gradient(model)}
    with pytest.raises(
        normgrad.InvalidArgumentError,
        match=r"'a \(smoothed\)' is reserved for the smoothed row of 'a'",
    ):
        normgrad.evaluate(model, clash, _data(1), smoothing_sigma=1.0, progress=False)
    result = normgrad.evaluate(model, clash, _data(1), progress=False)  # no smoothing: no clash
    assert [r.method for r in result.rows][:2] == ["a", "a (smoothed)"]


def test_progress_shows_rate_and_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    _run(_data(2), progress=True)
    err = capsys.readouterr().err
    assert "batch 2/2" in err and "images/s" in err and "s left" in err


def test_pointing_games_merge() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(10, 1, 8, 8, generator=gen)
    masks = torch.rand(10, 8, 8, generator=gen) > 0.8
    masks[3] = False
    whole = metrics.PointingGame(tolerance=1)
    whole.update(maps, masks)
    first, second = metrics.PointingGame(tolerance=1), metrics.PointingGame(tolerance=1)
    first.update(maps[:4], masks[:4])
    second.update(maps[4:], masks[4:])
    merged = first.merge(second)
    assert (merged.hits, merged.total, merged.skipped) == (whole.hits, whole.total, whole.skipped)
    assert merged.all_reduce() is merged  # no process group: nothing to do
    with pytest.raises(normgrad.InvalidArgumentError, match="same"):
        first.merge(metrics.PointingGame(tolerance=2))
    with pytest.raises(normgrad.ArgumentTypeError, match="other"):
        first.merge(3)  # type: ignore[arg-type]


def test_more_metrics_from_the_same_maps() -> None:
    data = _data()
    model = _model()
    explainers = _explainers(model)
    result = normgrad.evaluate(
        model, explainers, data, tolerance=2, progress=False,
        metrics=["froc", "energy", "multi"], froc_k=3,
    )  # fmt: skip
    assert result.metrics == ("energy", "multi", "froc")
    table = result.to_markdown()
    assert "| energy | multi-object PG | FROC |" in table
    for name, explainer in explainers.items():
        maps = torch.cat([explainer(x, labels) for x, labels, _ in data])
        boxes = [b for _, _, batch_boxes in data for b in batch_boxes]
        row = result[name]
        energy = metrics.energy_pointing_game(maps, boxes)
        multi = metrics.multi_pointing_game(maps, boxes, min_distance=2)
        froc = metrics.froc(maps, boxes, k=3, min_distance=2)
        assert row.energy == pytest.approx(float(energy.double().nanmean()), rel=1e-6)
        assert row.multi == pytest.approx(float(multi.double().nanmean()), rel=1e-9)
        assert row.froc == pytest.approx(froc.froc, rel=1e-12)
        kept = [r for r in result.records if r.method == name]
        assert sum(r.objects for r in kept) == froc.objects == 8
        assert all(len(r.detections) <= 3 for r in kept)
    assert math.isnan(result["random point"].froc)
    assert not math.isnan(result["centre map"].energy)
    plain = _run(data, smoothing_sigma=None)
    assert math.isnan(plain["NormGrad"].energy)  # not asked for
    assert "energy" not in plain.to_markdown()


def test_more_metrics_resume_and_errors(tmp_path: Path) -> None:
    data = _data()
    kwargs: dict[str, Any] = {"metrics": ("energy", "froc", "multi"), "froc_k": 2}
    whole = _run(data, **kwargs)
    path = tmp_path / "records.csv"
    with pytest.raises(KeyboardInterrupt):
        _run(Interrupted(data, 2), records=path, **kwargs)
    assert _canon(_run(data, records=path, **kwargs)) == _canon(whole)
    assert not math.isnan(whole["NormGrad"].froc)
    with pytest.raises(normgrad.ArgumentTypeError, match="metrics: expected a sequence"):
        _run(data, metrics="energy")
    with pytest.raises(
        normgrad.InvalidArgumentError, match=r"metrics: unknown metric\(s\) \[.dice.\]"
    ):
        _run(data, metrics=["dice"])
    with pytest.raises(normgrad.InvalidArgumentError, match="froc_k"):
        _run(data, metrics=["froc"], froc_k=0)
    masks = [(x, y, torch.zeros(x.shape[0], SIZE, SIZE, dtype=torch.bool)) for x, y, _ in data]
    for _, _, m in masks:
        m[:, 4:9, 4:9] = True
    energy = _run(masks, metrics=["energy"])["Gradient"].energy
    assert 0 < energy < 1  # masks are fine for the energy game
    with pytest.raises(normgrad.ArgumentTypeError, match="regions: expected"):
        _run(masks, metrics=["froc"])


def test_multi_and_froc_share_one_peak_search() -> None:
    """Asking for both reads each method's peaks from one search per batch: the kernels
    and device reads of a run asking both are fewer than those of the two runs asking one
    each, less those of a run asking neither (a second search would make them as many or
    more), and both columns equal those of the runs alone."""
    # up to three objects per image: K is above peaks=2 in some batches, below in others
    gen = torch.Generator().manual_seed(3)
    data = []
    for b in range(3):
        x = torch.randn(3, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        corners = [torch.randint(0, SIZE - 4, ((b + i) % 4, 2), generator=gen) for i in range(3)]
        data.append((x, None, [torch.cat([c, c + 3], dim=1) for c in corners]))
    kwargs: dict[str, Any] = {"froc_k": 2, "smoothing_sigma": 1.0}
    with counting() as neither_counts:
        _run(data, metrics=(), **kwargs)
    with counting() as multi_counts:
        multi = _run(data, metrics=("multi",), **kwargs)
    with counting() as froc_counts:
        froc = _run(data, metrics=("froc",), **kwargs)
    with counting() as both_counts:
        both = _run(data, metrics=("multi", "froc"), **kwargs)
    assert both_counts.kernels + neither_counts.kernels < multi_counts.kernels + froc_counts.kernels
    reads = both_counts.sync_count + neither_counts.sync_count
    assert reads < multi_counts.sync_count + froc_counts.sync_count
    assert any(r.detections for r in froc.records) and any(r.multi > 0 for r in multi.records)
    expected = [m._replace(detections=f.detections) for m, f in zip(multi.records, froc.records)]
    assert _canon(both)[1] == [tuple(_canon_value(v) for v in r) for r in expected]
    for column, alone in (("froc", froc), ("multi", multi)):
        got = [getattr(r, column) for r in both.rows]
        assert got == pytest.approx([getattr(r, column) for r in alone.rows], nan_ok=True)


def test_deletion_and_insertion_columns(tmp_path: Path) -> None:
    data = _data(2)
    model = _model()
    explainers = _explainers(model)
    path = tmp_path / "records.csv"
    kwargs: dict[str, Any] = {"progress": False, "reference_rows": False, "tolerance": 2}
    result = normgrad.evaluate(
        model, explainers, data, metrics=("deletion", "insertion"), records=path, **kwargs
    )
    assert "| deletion AUC | insertion AUC |" in result.to_markdown()
    for name, explainer in explainers.items():
        deletion, insertion = [], []
        for x, labels, _ in data:
            curves = metrics.deletion_insertion(model, x, explainer(x, labels), target=labels)
            deletion += curves.deletion_auc.tolist()
            insertion += curves.insertion_auc.tolist()
        assert result[name].deletion == pytest.approx(sum(deletion) / len(deletion), rel=1e-9)
        assert result[name].insertion == pytest.approx(sum(insertion) / len(insertion), rel=1e-9)
    resumed = normgrad.evaluate(
        model, explainers, data, metrics=("deletion", "insertion"), records=path, **kwargs
    )
    assert _canon(resumed) == _canon(result)  # read back from the file


def _deletion_records(
    data: Any, options: Any, path: Path | None = None
) -> dict[tuple[str, str], tuple[float, float]]:
    model = _model()
    result = normgrad.evaluate(
        model, _explainers(model), data, tolerance=2, progress=False, reference_rows=False,
        metrics=("deletion", "insertion"), deletion_options=options, records=path,
    )  # fmt: skip
    return {(r.image, r.method): (r.deletion, r.insertion) for r in result.records}


def test_deletion_options_reach_the_metric() -> None:
    data = _data(2)
    model = _model()
    grey = torch.full((1, 3, 1, 1), 0.5, dtype=torch.float64)
    chosen = [{"steps": 4, "baseline": "blur", "batch_size": 5}, {"baseline": grey}]
    default = _deletion_records(data, None)
    for options in chosen:
        got = _deletion_records(data, options)
        for b, (x, labels, _) in enumerate(data):
            for name, explainer in _explainers(model).items():
                # the public metric, on the explainer's own maps, with the same options
                curves = metrics.deletion_insertion(
                    model, x, explainer(x, labels), target=labels, **options
                )
                for i in range(x.shape[0]):
                    expected = (float(curves.deletion_auc[i]), float(curves.insertion_auc[i]))
                    assert got[str(b * 3 + i), name] == pytest.approx(expected, rel=1e-9)
        assert got.keys() == default.keys()
        assert all(got[k] != default[k] for k in got)  # the options change every image
    assert _deletion_records(data, {"batch_size": 1}) == default
    assert _deletion_records(data, {"steps": 20, "baseline": "zeros"}) == default


def test_deletion_options_errors_before_any_pass() -> None:
    data = _data(1)
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    passes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: passes.append(1))
    cases: list[tuple[Any, Any, type[Exception], str]] = [
        (["steps", 4], ("deletion",), normgrad.ArgumentTypeError, r"expected a dict with keys"),
        ({"step": 4}, ("deletion",), normgrad.InvalidArgumentError, r"key\(s\) \['step'\]"),
        ({"steps": 4}, ("energy",), normgrad.InvalidArgumentError, "neither 'deletion' nor"),
        ({"steps": 0}, ("deletion",), normgrad.InvalidArgumentError, r"\['steps'\]: expected a"),
        ({"steps": 2.5}, ("insertion",), normgrad.ArgumentTypeError, r"\['steps'\]: expected"),
        ({"baseline": "noise"}, ("deletion",), normgrad.InvalidArgumentError, "'noise'"),
        ({"batch_size": True}, ("deletion",), normgrad.ArgumentTypeError, "batch_size"),
        # known from the first batch's images, still before its pass
        ({"steps": 257}, ("deletion",), normgrad.InvalidArgumentError, "at most the 256 pixels"),
        ({"baseline": torch.zeros(2, 3, 1, 1)}, ("deletion",), normgrad.ShapeError, r"\(3, 3, 16"),
    ]
    try:
        for options, chosen, error, message in cases:
            with pytest.raises(error, match=message) as raised:
                normgrad.evaluate(
                    model, _explainers(model), data, progress=False, metrics=chosen,
                    deletion_options=options,
                )  # fmt: skip
            assert str(raised.value).startswith("deletion_options")
            if isinstance(options, list) or "step" in options:  # the keys it could have had
                assert "among ['steps', 'baseline', 'batch_size']" in str(raised.value)
    finally:
        handle.remove()
    assert passes == []
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_resuming_with_other_deletion_options_is_refused(tmp_path: Path) -> None:
    data = _data(1)
    path = tmp_path / "records.csv"
    grey = torch.full((1, 3, 1, 1), 0.5, dtype=torch.float64)
    first = _deletion_records(data, {"steps": 4, "baseline": grey}, path)
    # the same settings (an equal tensor, another memory bound) resume the file
    same = {"steps": 4, "baseline": grey.clone(), "batch_size": 2}
    assert _deletion_records(data, same, path) == first
    for other in ({"steps": 5, "baseline": grey}, {"steps": 4, "baseline": grey + 1e-9}, None):
        with pytest.raises(normgrad.InvalidArgumentError, match=r"\(deletion_options differ\)"):
            _deletion_records(data, other, path)


class _HalfWritten:
    """A file that writes half of what it is given, then fails (a crash mid-write)."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __enter__(self) -> _HalfWritten:
        return self

    def __exit__(self, *args: Any) -> None:
        self.f.close()

    def write(self, text: str) -> int:
        self.f.write(text[: len(text) // 2])
        self.f.flush()
        raise KeyboardInterrupt


@pytest.mark.parametrize("crash", ["mid-write", "before fsync", "before the swap"])
def test_a_crash_while_the_file_is_rewritten_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    data = _data(2)
    path = tmp_path / "records.csv"
    whole = _run(data, records=path)
    before = path.read_bytes()
    import os

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    if crash == "mid-write":
        fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: _HalfWritten(fdopen(*a, **k)))
    else:
        monkeypatch.setattr(os, "fsync" if crash == "before fsync" else "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        _run(data, records=path)  # a resume: the file is rewritten first
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["records.csv"]  # no temporary left
    assert _canon(_run(data, records=path)) == _canon(whole)


def _file_records(images: list[str], methods: list[str]) -> list[normgrad.Record]:
    out = []
    for n, image in enumerate(images):
        for m, method in enumerate(methods):
            random = method == "random point"
            out.append(
                normgrad.Record(
                    image, method, 0.25 if random else float((n + m) % 2),
                    None if random else (n, m), 0.5, float("nan"), 1,
                    () if random else ((0.75, True), (0.125, False)), float("nan"), 0.5,
                    n % 2 == 1, more=tuple(
                        (f.name, f.default) for f in plugins.fields()
                        if f.name not in normgrad.Record._fields
                    ),
                )
            )  # fmt: skip
    return out


@examples(60)
@given(
    images=st.lists(st.text(max_size=12), min_size=1, max_size=6, unique=True),
    method=st.text(min_size=1, max_size=8).filter(lambda m: m != "random point"),
)
def test_records_with_any_text_ids_round_trip(images: list[str], method: str) -> None:
    """Ids and method names holding "\\r", "\\u2028", quotes, commas, newlines or NUL are read
    back as written (one record per line only where the CSV quoting allows it)."""
    from normgrad._evaluation.records import RecordFile

    methods = [method, "random point"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "records.csv"
        written = RecordFile(path, {"a": 1}, methods)
        records = _file_records(images, methods)
        written.append(records[: len(records) // 2 * 2])
        written.append(records[len(records) // 2 * 2 :])
        read = RecordFile(path, {"a": 1}, methods)
    canon = [tuple(_canon_value(v) for v in r) for r in records]
    assert [tuple(_canon_value(v) for v in r) for rs in read.done.values() for r in rs] == canon
    assert list(read.done) == images


def test_ids_with_carriage_returns_and_line_separators_resume(tmp_path: Path) -> None:
    ids = ["scan\r1", "scan\u20282", "scan\n3", 'a "quoted",\r\nid', "scan\x855", "6"]
    data = [(x, y, r, ids[3 * b : 3 * b + 3]) for b, (x, y, r) in enumerate(_data(2))]
    path = tmp_path / "records.csv"
    with pytest.raises(KeyboardInterrupt):
        _run(Interrupted(data, 1), records=path)
    whole = _run(data)
    resumed = _run(data, records=path)
    assert _canon(resumed) == _canon(whole)
    assert {r.image for r in resumed.records} == set(ids)
    again = _run(data, records=path)  # nothing left to do, every id read back
    assert _canon(again) == _canon(whole)
    parsed = list(csv.reader(io.StringIO(whole.records_to_csv(), newline="")))
    assert {row[0] for row in parsed[1:]} == set(ids)


def test_ids_that_only_look_like_numbers_are_ordered() -> None:
    from normgrad._evaluation.records import image_order

    ids = ["10", "9", "²", "٣", "1" * 5000, "007", "7", "", "b", "a"]
    ordered = sorted(ids, key=image_order)
    assert ordered == ["007", "7", "9", "10", "1" * 5000, "", "a", "b", "²", "٣"]
    data = [(x, y, r, ["²", "1" * 5000, "x"]) for x, y, r in _data(1)]
    assert {r.image for r in _run(data).records} == {"²", "1" * 5000, "x"}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        (2, "2", "hit: expected 1 (hit), 0 (miss) or nothing"),  # more hits than images
        (2, "0.5", "hit: expected 1 (hit), 0 (miss) or nothing"),
        (2, "inf", "hit: expected 1 (hit), 0 (miss) or nothing"),
        (1, "NormGrod", "method: expected one of"),
        (3, "3.5 2", "point: expected an int >= 0"),
        (3, "7 9 99999 5", "point: expected 2 or 3 coordinates"),
        (3, "7", "point: expected 2 or 3 coordinates"),
        (3, "7 9 3", "point: expected 2 coordinates as on line 3"),  # a voxel in a 2-D file
        (3, "7 99", "point: NormGrad's point 7 99 of image '1' is not a pixel of its map"),
        (6, "0.5", "objects: expected an int >= 0"),
        (9, "inf", "insertion: expected a finite number"),
        (11, "-1.0", "distance: expected a finite number in [0, inf]"),
        (11, "nan", "distance: expected a finite number in [0, inf]"),
        (None, "", "expected 15 fields"),
    ],
)
def test_a_hand_edited_record_is_refused_naming_the_file_and_line(
    tmp_path: Path, field: int | None, value: str, problem: str
) -> None:
    path = tmp_path / "records.csv"
    _run(_data(1), records=path)
    lines = path.read_text().split("\n")
    index = next(i for i, line in enumerate(lines) if line.startswith("1,NormGrad,"))
    row = next(csv.reader([lines[index]]))  # image 1 has a region: hit 0 or 1
    assert row[2] in ("0", "1")
    if field is None:
        row.pop()
    else:
        row[field] = value
    lines[index] = ",".join(row)
    path.write_text("\n".join(lines))
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        _run(_data(1), records=path)
    message = str(error.value)
    assert message.startswith(f"records: {str(path)!r} line {index + 1}: {problem}"), message


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda lines: lines[0].replace("{", "[{", 1) + "]",
            "line 1: expected the settings as a JSON object",
        ),
        (lambda lines: lines[0][:-5], "line 1: the settings are not valid JSON"),
        (lambda lines: "# normgrad evaluate records v1 {}", "older normgrad (records v1)"),
        (
            lambda lines: lines[0].replace("records v3", "records v2"),
            "older normgrad (records v2)",  # a checksum that missed sign flips, no modules
        ),
        (lambda lines: lines[0] + "\nimage,method", "line 2: expected the header"),
        (lambda lines: "\n".join([*lines[:3], '"0,oops"x,1', *lines[3:]]), "line 4: not CSV"),
    ],
)
def test_a_hand_edited_header_is_refused_naming_the_file_and_line(
    tmp_path: Path, edit: Any, problem: str
) -> None:
    path = tmp_path / "records.csv"
    _run(_data(1), records=path)
    lines = path.read_text().split("\n")
    changed = edit(lines)
    rest = lines[1:] if "\n" not in changed else []
    path.write_text("\n".join([changed, *rest]) + "\n")
    with pytest.raises(normgrad.InvalidArgumentError, match="records") as error:
        _run(_data(1), records=path)
    assert str(path) in str(error.value) and problem in str(error.value), str(error.value)


def test_other_values_a_record_cannot_hold_are_refused(tmp_path: Path) -> None:
    from normgrad._evaluation.records import RecordFile

    methods = ["m", "random point"]
    good = records_line = None
    path = tmp_path / "records.csv"
    RecordFile(path, {"a": 1}, methods).append(_file_records(["x"], methods))
    text = path.read_text()
    good, records_line = text.rsplit("\n", 3)[0], text.split("\n")[2]
    assert RecordFile(path, {"a": 1}, methods).done  # unchanged, it reads back
    for bad, problem in [
        (records_line.replace(",0.5,", ",inf,", 1), "energy: expected a finite number"),
        (records_line.replace(",1,0.75", ",0.5,0.75", 1), "objects: expected an int >= 0"),
        (records_line.replace("0.75:1", "0.75:2", 1), "detections: expected 'score:1'"),
        (records_line.replace("0.75:1", "nan:1", 1), "detections: expected a finite number"),
        (records_line + ",", "expected 15 fields"),
    ]:
        assert bad != records_line, problem
        path.write_text(text.replace(records_line, bad, 1))
        with pytest.raises(normgrad.InvalidArgumentError, match=f"line 3: {problem}"):
            RecordFile(path, {"a": 1}, methods)
    random_line = text.split("\n")[3]
    for bad, problem in [
        (random_line.replace(",0.25,", ",1.5,", 1), r"hit: expected a finite number in \[0, 1\]"),
        (random_line.replace(",0.25,,", ",0.25,1 2,", 1), "point: expected nothing"),
    ]:
        assert bad != random_line, problem
        path.write_text(text.replace(random_line, bad, 1))
        with pytest.raises(normgrad.InvalidArgumentError, match=f"line 4: {problem}"):
            RecordFile(path, {"a": 1}, methods)
    del good


def test_images_with_regions_outside_their_maps_are_counted_in_the_result(
    tmp_path: Path,
) -> None:
    """Boxes in the original image's pixels while the maps are smaller: images whose every
    box is outside are not counted, and the result says which and how many."""
    data = _data(2)
    scaled = [(x, y, [b * 10 if i % 3 == 1 else b for i, b in enumerate(r)]) for x, y, r in data]
    scaled[1][2][2] = torch.cat([data[1][2][2], data[1][2][2] * 10])  # one in, one out
    path = tmp_path / "records.csv"
    with pytest.warns(UserWarning) as caught:
        result = _run(scaled, records=path)
    # ids 1 and 4 have one box, outside; 5 has one in and one out; 0 and 3 have no box
    assert result.outside == ("1", "4", "5")
    assert result.not_counted == ("0", "1", "3", "4")
    assert result["NormGrad"].total == 2
    summary = [str(w.message) for w in caught if str(w.message).startswith("evaluate: ")]
    assert summary == [
        "evaluate: 3 image(s) have a region wholly outside their map ('1', '4', '5'), 2 of "
        "them not counted (no region left inside): regions in the original image's "
        "coordinates while the images were resized? (result.outside lists them)"
    ]
    assert "3 image(s) have a region wholly outside" in str(result)
    assert "3 image(s)" not in str(_run(data))
    rows = list(csv.reader(io.StringIO(result.records_to_csv())))
    assert {row[0] for row in rows[1:] if row[10] == "1"} == {"1", "4", "5"}
    with pytest.warns(UserWarning, match="evaluate: 3 image"):
        resumed = _run(scaled, records=path)  # read back from the file
    assert resumed.outside == result.outside and _canon(resumed) == _canon(result)


def test_a_record_cut_inside_a_quoted_id_is_done_again(tmp_path: Path) -> None:
    """A run stopped while writing a record whose id holds a newline: the file ends inside
    the quoted id, on a newline; the images before it are kept, that one is done again."""
    from normgrad._evaluation.records import RecordFile

    methods = ["m", "random point"]
    path = tmp_path / "records.csv"
    RecordFile(path, {"a": 1}, methods).append(_file_records(["first", "two\nlines"], methods))
    text = path.read_text()
    cut = text.rindex('"two\n') + len('"two\n')  # inside the last record's quoted id
    for end in (cut, cut - 2, len(text) - 1):  # on the newline, before it, the last line's
        path.write_text(text[:end])
        assert list(RecordFile(path, {"a": 1}, methods).done) == ["first"], end
    path.write_text(text)
    assert list(RecordFile(path, {"a": 1}, methods).done) == ["first", "two\nlines"]


# ---------------------------------------------------------------------------------------
# the Pointing Game at every tolerance, read from the records


def test_records_hold_each_images_distance_from_which_any_tolerance_is_read() -> None:
    data = _data()
    result = _run(data)  # at tolerance 2
    model = _model()
    by_key = {(r.image, r.method): r for r in result.records}
    for b, (x, labels, boxes) in enumerate(data):
        for name, explainer in _explainers(model).items():
            distances = metrics.pointing_distances(explainer(x, labels), boxes).tolist()
            for i, d in enumerate(distances):
                recorded = by_key[(str(b * 3 + i), name)].distance
                assert recorded == d or (math.isnan(d) and math.isnan(recorded))
    assert all(math.isnan(r.distance) for r in result.records if r.point is None)
    # the table at other tolerances, from the records alone, is the one a run there gives
    tolerances = [0.0, 1.0, 2.0, 3.5, 6.0]
    curves = result.curves(tolerances)
    assert "random point" not in curves
    assert list(curves) == [r.method for r in result.rows if r.method != "random point"]
    for k, t in enumerate(tolerances):
        rerun = _run(data, tolerance=t) if t > 0 else None
        for method, curve in curves.items():
            if rerun is not None:
                row = rerun[method]
                assert (curve.hits[k], curve.counted) == (row.hits, row.total)
                assert curve.hit_rate[k] == row.accuracy
                assert (curve.low[k], curve.high[k]) == (row.low, row.high)
            hits = sum(
                1
                for r in result.records
                if r.method == method
                and not math.isnan(r.hit)
                and (r.distance < t or r.distance == 0)
            )
            assert curve.hits[k] == hits


def test_an_earlier_run_is_read_back_from_its_records_file(tmp_path: Path) -> None:
    data = _data()
    path = tmp_path / "run.csv"
    result = _run(data, records=path, metrics=("energy",))
    again = normgrad.read_records(path)
    assert _canon(again) == _canon(result)
    assert (again.tolerance, again.confidence, again.metrics) == (2.0, 0.95, ("energy",))
    assert again.curves([1, 4], max_tolerance=4) == result.curves([1, 4], max_tolerance=4)
    # a hand-edited distance is refused like any other field
    lines = path.read_text(encoding="utf-8").split("\n")
    row = next(i for i, line in enumerate(lines) if line.startswith("1,NormGrad,"))
    cells = next(csv.reader([lines[row]]))
    cells[11] = "-1.0"  # the distance
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(normgrad.InvalidArgumentError, match=r"line \d+: distance"):
        normgrad.read_records(path)


def test_a_temporary_left_by_a_killed_rewrite_is_cleaned_up(tmp_path: Path) -> None:
    """A process killed (SIGKILL) while rewriting leaves its temporary beside the file; the
    next run replaces it and leaves none."""
    data = _data(2)
    path = tmp_path / "records.csv"
    whole = _run(data, records=path)
    left = tmp_path / ".records.csv.tmp"  # the one temporary a rewrite of the file uses
    left.write_text(path.read_text()[:100])  # killed half-way
    assert _canon(_run(data, records=path)) == _canon(whole)
    assert [p.name for p in tmp_path.iterdir()] == ["records.csv"]


def test_a_crash_inside_a_batchs_append_is_resumed_without_duplicates(tmp_path: Path) -> None:
    """A run killed while appending a batch leaves some of its images complete: the resume
    explains the batch again but writes only the images the file lacks, so the file never
    holds an image twice, later resumes explain nothing and read_records equals the run."""
    data = _data(2)
    path = tmp_path / "records.csv"
    whole = _run(data, records=path)
    rows = path.read_text().count("\n")
    path.write_text(path.read_text()[:-30])  # the last image's last record cut
    model = _model()
    explained: list[int] = []
    model.register_forward_pre_hook(lambda m, args: explained.append(args[0].shape[0]))
    for attempt in range(3):
        explained.clear()
        resumed = normgrad.evaluate(
            model, _explainers(model), data, tolerance=2, smoothing_sigma=1.0,
            progress=False, records=path,
        )  # fmt: skip
        assert _canon(resumed) == _canon(whole)
        assert len(explained) == (1 if attempt == 0 else 0), attempt  # the cut batch, once
        assert path.read_text().count("\n") == rows
        images = [r[0] for r in csv.reader(io.StringIO(path.read_text().split("\n", 2)[2]))]
        assert len(images) == len(whole.records)
    assert _canon(normgrad.read_records(path)) == _canon(whole)


def test_read_records_counts_an_image_written_twice_once(tmp_path: Path) -> None:
    """A file holding an image's records twice (an older normgrad appended a batch done
    again in full) is read with each image once."""
    data = _data(2)
    path = tmp_path / "records.csv"
    whole = _run(data, records=path)
    lines = path.read_text().split("\n")
    path.write_text("\n".join([*lines[:-1], *lines[-7:-1], ""]))  # the last image again
    assert _canon(normgrad.read_records(path)) == _canon(whole)
    assert _canon(_run(data, records=path)) == _canon(whole)


def test_points_of_another_number_of_dimensions_than_the_data_are_refused(
    tmp_path: Path,
) -> None:
    """A file whose points are all voxels (the same count on every line) is refused when
    the data's maps are 2-D, naming the file and the line."""
    path = tmp_path / "records.csv"
    _run(_data(1), records=path)
    lines = path.read_text().split("\n")
    for i in range(2, len(lines)):
        row = next(csv.reader([lines[i]]), None)
        if row and row[3]:
            row[3] += " 0"
            lines[i] = ",".join(row)
    path.write_text("\n".join(lines))
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        _run(_data(1), records=path)
    assert f"records: {str(path)!r} line 3: point: " in str(error.value), str(error.value)
    assert "is not a pixel of its map, of shape (16, 16)" in str(error.value)


class _Explained:
    """Counts the passes of a model's forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.passes = 0
        model.register_forward_pre_hook(self._count)

    def _count(self, module: torch.nn.Module, args: Any) -> None:
        self.passes += 1


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ([[1, 2, 3], ["1", "b", "c"]], "image(s) 1 given more than once (batch 2"),
        ([["a", "b", "a"], ["c", "d", "e"]], "image(s) a given more than once (batch 1"),
        ([["a", "b", "c"], ["d", "bad\ud800", "e"]], "the image id 'bad\\ud800' is not valid"),
    ],
)
def test_ids_that_collide_as_text_or_are_not_text_fail_before_their_batch(
    ids: list[list[Any]], problem: str
) -> None:
    """Ids 1 and '1' are one id once written as text; an id with a lone surrogate cannot be
    written: both are refused before their batch is explained, not after every batch."""
    data = [(*batch, chosen) for batch, chosen in zip(_data(3), [*ids, ["x", "y", "z"]])]
    model = _model()
    explained = _Explained(model)
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        normgrad.evaluate(model, _explainers(model), data, progress=False)
    assert problem in str(error.value), str(error.value)
    assert explained.passes == (0 if "(batch 1" in problem else 1)  # the first batch at most


def test_read_records_reads_a_file_of_the_previous_version(tmp_path: Path) -> None:
    """A v2 file (its records as today's) is read back; only resuming it is refused."""
    path = tmp_path / "records.csv"
    whole = _run(_data(1), records=path)
    path.write_text(path.read_text().replace("records v3", "records v2", 1))
    assert _canon(normgrad.read_records(path)) == _canon(whole)
    with pytest.raises(normgrad.InvalidArgumentError, match=r"older normgrad \(records v2\)"):
        _run(_data(1), records=path)


def test_a_file_from_before_peak_distances_in_spacing_units_is_not_resumed(
    tmp_path: Path,
) -> None:
    """The peaks' distances are in spacing units; a records file written with a spacing and
    multi or FROC before (its header without the rule) is refused, naming it, and files
    without that combination resume as before."""
    data = _data()
    kwargs: dict[str, Any] = {"metrics": ("multi",), "spacing": (0.5, 0.5)}
    path = tmp_path / "records.csv"
    with pytest.raises(KeyboardInterrupt):
        _run(Interrupted(data, 2), records=path, **kwargs)
    lines = path.read_text(encoding="utf-8").split("\n")
    magic, _, header = lines[0].partition("{")
    settings = json.loads("{" + header)
    assert settings.pop("peak_distances") == "spacing units"
    path.write_text("\n".join([magic + json.dumps(settings, sort_keys=True), *lines[1:]]))
    with pytest.raises(normgrad.InvalidArgumentError, match=r"peak_distances"):
        _run(data, records=path, **kwargs)
    plain = tmp_path / "plain.csv"  # no spacing: the rule does not apply, no key
    with pytest.raises(KeyboardInterrupt):
        _run(Interrupted(data, 2), records=plain, metrics=("multi",))
    assert "peak_distances" not in plain.read_text(encoding="utf-8").split("\n")[0]


# renamed public names keep working, with a warning, for one release; records files
# written under the old names are read and resumed as before


def test_center_baseline_is_center_map_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"normgrad\.CenterBaseline .*normgrad\.CenterMap"):
        old = normgrad.CenterBaseline
    assert old is normgrad.CenterMap
    assert "CenterBaseline" not in normgrad.__all__


def test_evaluate_baselines_is_reference_rows_with_a_warning() -> None:
    data = _data(batches=2)
    for rows in (True, False):
        with pytest.warns(DeprecationWarning, match=r"reference_rows"):
            old = _run(data, baselines=rows)
        assert _canon(old) == _canon(_run(data, reference_rows=rows))
    methods = [r.method for r in _run(data).rows]
    assert methods[-2:] == ["centre map", "random point"]


def test_evaluate_peaks_is_froc_k_with_a_warning() -> None:
    data = _data(batches=2)
    with pytest.warns(DeprecationWarning, match=r"froc_k"):
        old = _run(data, metrics=("froc",), peaks=2)
    new = _run(data, metrics=("froc",), froc_k=2)
    assert _canon(old) == _canon(new)
    assert _canon(new) != _canon(_run(data, metrics=("froc",), froc_k=1))
    with pytest.raises(normgrad.InvalidArgumentError, match="pass froc_k alone"):
        _run(data, metrics=("froc",), peaks=2, froc_k=3)
    with pytest.raises(normgrad.InvalidArgumentError, match="pass reference_rows alone"):
        _run(data, baselines=True, reference_rows=False)


def test_a_records_file_of_the_old_names_is_resumed(tmp_path: Path) -> None:
    data = _data()
    path = tmp_path / "records.csv"
    whole = _run(data, records=path)
    text = path.read_text(encoding="utf-8")
    assert '"reference_rows": true' in text and ",centre map," in text
    old = text.replace('"reference_rows"', '"baselines"')
    old = old.replace(",centre map,", ",centre baseline,").replace(
        ",random point,", ",random baseline,"
    )
    # the file of an interrupted run: its last batch missing
    lines = old.split("\n")
    path.write_text("\n".join(lines[: -1 - 3 * 4]) + "\n", encoding="utf-8")
    resumed = _run(data, records=path)
    assert _canon(resumed) == _canon(whole)
    assert _canon(normgrad.read_records(path)) == _canon(whole)


def _pairs_data(repeat: bool = False) -> list[tuple[Any, ...]]:
    """Two batches of two images with two classes each (labels ``(N, K)``), ids given;
    with ``repeat`` the second batch's first image lists class 3 twice."""
    gen = torch.Generator().manual_seed(4)
    data = []
    for b in range(2):
        x = torch.randn(2, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        labels = torch.tensor([[b, 3], [3, 3] if repeat and b else [2, 4]])
        regions = [[torch.tensor([[1, 2, 9, 12]]), torch.tensor([[4, 4, 15, 15]])]] * 2
        data.append((x, labels, regions, [f"im{2 * b}", f"im{2 * b + 1}"]))
    return data


def test_a_run_of_several_classes_per_image_is_resumed_where_it_stopped(tmp_path: Path) -> None:
    """Labels ``(N, K)``: the records are the (image, class) pairs', and a resume explains
    only the batches whose pairs the file lacks (not every batch again)."""
    data = _pairs_data()
    path = tmp_path / "records.csv"
    whole = _run(data, records=path)
    assert {r.image for r in whole.records} == {f"im{i}/{c}" for i, c in
                                                [(0, 0), (0, 3), (1, 2), (1, 4),
                                                 (2, 1), (2, 3), (3, 2), (3, 4)]}  # fmt: skip
    lines = path.read_text(encoding="utf-8").split("\n")
    path.write_text("\n".join(lines[:-4]) + "\n", encoding="utf-8")  # im3/4 cut off
    model = _model()
    explained = _Explained(model)
    resumed = normgrad.evaluate(
        model, _explainers(model), data, tolerance=2, smoothing_sigma=1.0,
        progress=False, records=path,
    )  # fmt: skip
    assert _canon(resumed) == _canon(whole)
    assert explained.passes == 1  # the second batch only
    again = _Explained(model)
    normgrad.evaluate(model, _explainers(model), data, progress=False, tolerance=2,
                      smoothing_sigma=1.0, records=path)  # fmt: skip
    assert again.passes == 0


def test_a_hand_edited_point_of_a_pair_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    _run(_pairs_data(), records=path)
    lines = path.read_text(encoding="utf-8").split("\n")
    row = next(csv.reader([lines[2]]))
    assert row[0] == "im0/0" and row[3]
    row[3] = "40 7"
    lines[2] = ",".join(row)
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        _run(_pairs_data(), records=path)
    assert f"records: {str(path)!r} line 3: point: " in str(error.value), str(error.value)
    assert "40 7 of image 'im0/0' is not a pixel of its map" in str(error.value)


def test_a_class_listed_twice_for_an_image_is_refused_before_its_batch(tmp_path: Path) -> None:
    model = _model()
    explained = _Explained(model)
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        normgrad.evaluate(
            model, _explainers(model), _pairs_data(repeat=True), progress=False,
            records=tmp_path / "records.csv",
        )  # fmt: skip
    message = str(error.value)
    assert "data: the labels of batch 2" in message, message
    assert "image 'im3' lists class 3 more than once ([3, 3])" in message, message
    assert explained.passes == 1  # the first batch only


def test_a_records_file_reached_through_a_symbolic_link_stays_where_the_link_points(
    tmp_path: Path,
) -> None:
    """A rewrite replaces the file the link points to (on other storage, say), not the
    link: every batch reaches the target, and the link stays a link."""
    target = tmp_path / "storage" / "records.csv"
    target.parent.mkdir()
    target.write_text("")
    link = tmp_path / "run" / "records.csv"
    link.parent.mkdir()
    try:
        link.symlink_to(target)
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")
    data = _data(2)
    _run(data[:1], records=link)
    whole = _run(data, records=link)  # resumed: rewritten, then appended to
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert _canon(normgrad.read_records(target)) == _canon(whole)
    assert [p.name for p in target.parent.iterdir()] == ["records.csv"]  # no temporary left
