"""The examples: the synthetic data generator, the Object-CXR reader, the protocol, pictures."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from .example_modules import load

# ---------------------------------------------------------------------------------------
# synthetic radiographs


@pytest.mark.parametrize("small_central", [False, True])
@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_boxes_match_the_drawn_objects_exactly(seed: int, small_central: bool) -> None:
    cxr = load("synthetic_cxr")
    drawn = cxr.make_radiograph(96, seed, n_objects=3, small_central=small_central)
    blank = cxr.make_radiograph(
        96, seed, n_objects=3, small_central=small_central, object_intensity=0.0
    )
    changed = drawn.image != blank.image
    # every pixel an object brightened, and no other, is in the union of the object masks
    assert torch.equal(changed, drawn.masks.any(dim=0))
    for box, mask in zip(drawn.boxes.tolist(), drawn.masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    assert len(drawn.kinds) == 3 and set(drawn.kinds) <= set(cxr.OBJECT_KINDS)


def test_dataset_is_deterministic_and_balanced() -> None:
    cxr = load("synthetic_cxr")
    a, b = cxr.SyntheticCXR(10, size=64, seed=3), cxr.SyntheticCXR(10, size=64, seed=3)
    for i in range(10):
        xa, ya, ba = a[i]
        xb, yb, bb = b[i]
        assert torch.equal(xa, xb) and ya == yb and torch.equal(ba, bb)
        assert xa.shape == (3, 64, 64)
        assert ya == (i % 2) and (len(ba) > 0) == bool(ya)
        assert 1 <= len(ba) <= 3 or ya == 0
    other = cxr.SyntheticCXR(10, size=64, seed=4)
    assert not torch.equal(a[0][0], other[0][0])


def test_texture_changes_the_background_not_the_objects() -> None:
    cxr = load("synthetic_cxr")
    for seed in (0, 3):
        smooth = cxr.make_radiograph(96, seed, n_objects=2, texture=False)
        textured = cxr.make_radiograph(96, seed, n_objects=2)
        # the same objects in the same places: the texture has its own random numbers
        assert torch.equal(smooth.boxes, textured.boxes)
        assert torch.equal(smooth.masks, textured.masks) and smooth.kinds == textured.kinds
        difference = (textured.image - smooth.image).abs()
        assert float(difference.mean()) > 0.005  # lung texture, bone texture and noise
    # texture off is the earlier generator: nothing of the texture's is drawn
    blank = cxr.make_radiograph(64, 5, texture=False)
    again = cxr.make_radiograph(64, 5, texture=False)
    assert torch.equal(blank.image, again.image)


def test_quantum_noise_follows_the_photon_count() -> None:
    cxr = load("synthetic_cxr")
    image = torch.tensor([[0.0, 0.5], [1.0, 2.0]], dtype=torch.float64)
    for size in (96, 600):
        std = cxr.quantum_noise_std(image, size)
        pixel_area = (cxr.FIELD_OF_VIEW_MM / size) ** 2  # mm^2
        for value, sigma in zip(image.flatten().tolist(), std.flatten().tolist()):
            photons = cxr.QUANTA_PER_MM2 * pixel_area * math.exp(-cxr.ATTENUATION_PER_UNIT * value)
            # Poisson: relative error 1/sqrt(n) of the transmitted count, in log units
            assert sigma == pytest.approx(1 / (cxr.ATTENUATION_PER_UNIT * math.sqrt(photons)))
    # denser is noisier; a bigger image has smaller pixels, fewer photons each
    assert bool((std.flatten().diff() > 0).all())
    assert float(cxr.quantum_noise_std(image, 96)[0, 0]) < float(std[0, 0])


def test_objects_are_spread_over_the_lungs_not_at_the_centre() -> None:
    cxr = load("synthetic_cxr")
    ds = cxr.SyntheticCXR(80, size=96, seed=0)
    centres = torch.cat(
        [(b[:, :2] + b[:, 2:]).float() / 2 for _, _, b in (ds[i] for i in range(1, 80, 2))]
    )
    distance = (centres - 47.5).norm(dim=1)
    assert float(distance.median()) > 15  # most objects are far from the centre
    small = cxr.SyntheticCXR(40, size=96, seed=0, small_central=True)
    small_centres = torch.cat(
        [(b[:, :2] + b[:, 2:]).float() / 2 for _, _, b in (small[i] for i in range(1, 40, 2))]
    )
    assert float((small_centres - 47.5).norm(dim=1).max()) < 10


# ---------------------------------------------------------------------------------------
# Object-CXR reader, on a tiny fixture in the data set's format


def write_fixture(root: Path) -> None:
    from PIL import Image

    rows = [
        ("train/a.jpg", ""),
        ("train/b.jpg", "0 10 20 30 40;1 50 50 60 70"),
        ("train/c.jpg", "2 5 5 25 8 15 30"),
        ("train/d.jpg", ""),
    ]
    for split in ("train", "dev"):
        (root / split).mkdir(parents=True)
        with (root / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_name", "annotation"])
            for name, annotation in rows:
                writer.writerow([name.replace("train", split), annotation])
        for name, _ in rows:
            image = Image.new("L", (100, 80), color=40)
            image.save(root / name.replace("train", split))


def test_parse_annotation_shapes() -> None:
    reader = load("object_cxr")
    assert reader.parse_annotation("") == []
    assert reader.parse_annotation("0 10 20 30 40") == [[10, 20, 30, 40]]
    assert reader.parse_annotation("1 50 50 60 70;0 1 2 3 4") == [[50, 50, 60, 70], [1, 2, 3, 4]]
    assert reader.parse_annotation("2 5 5 25 8 15 30") == [[5, 5, 25, 30]]
    with pytest.raises(ValueError, match="unknown shape type 3"):
        reader.parse_annotation("3 1 2 3 4")
    with pytest.raises(ValueError, match="a rectangle has 4 coordinates"):
        reader.parse_annotation("0 1 2 3 4 5 6")


def test_parse_shapes_and_scale_them() -> None:
    from normgrad.metrics import Box, Ellipse, Polygon

    reader = load("object_cxr")
    shapes = reader.parse_shapes("0 30 40 10 20;1 50 50 60 70;2 5 5 25 8 15 30")
    assert shapes == [
        Box(10, 20, 30, 40),
        Ellipse(50, 50, 60, 70),
        Polygon([(5, 5), (25, 8), (15, 30)]),
    ]
    # halving: pixel centres 0 and 1 become -0.25 and 0.75, a box covers what it touches
    assert reader.scale_shape(Box(10, 20, 30, 40), 0.5, 0.5) == Box(5, 10, 15, 20)
    assert reader.scale_shape(Ellipse(1, 1, 3, 5), 0.5, 0.5) == Ellipse(0.25, 0.25, 1.25, 2.25)
    assert reader.scale_shape(Polygon([(1, 3)]), 2, 2) == Polygon([(2.5, 6.5)])


def test_object_cxr_dataset_on_fixture(tmp_path: Path) -> None:
    reader = load("object_cxr")
    write_fixture(tmp_path)
    ds = reader.ObjectCXR(tmp_path / "train.csv", tmp_path / "train", size=50)
    assert len(ds) == 4
    image, label, boxes = ds[1]
    assert image.shape == (3, 50, 50) and label == 1
    assert float(image.max()) == pytest.approx(40 / 255, abs=1 / 255)
    # 100 x 80 -> 50 x 50: x scale 0.5, y scale 0.625; boxes cover every touched pixel
    assert boxes.tolist() == [[5, 12, 15, 25], [25, 31, 30, 44]]
    assert ds[0][1] == 0 and ds[0][2].shape == (0, 4)
    assert ds[2][2].tolist() == [[2, 3, 12, 19]]
    from normgrad.metrics import Box

    assert [s.bounds() for s in ds.shapes(1) if isinstance(s, Box)] == [(5, 12, 15, 25)]


def test_object_cxr_header_is_checked(tmp_path: Path) -> None:
    reader = load("object_cxr")
    (tmp_path / "bad.csv").write_text("file,boxes\na.jpg,\n")
    with pytest.raises(ValueError, match="expected the header 'image_name,annotation'"):
        reader.read_annotations(tmp_path / "bad.csv")


def test_object_cxr_protocol_runs_on_fixture(tmp_path: Path) -> None:
    reader = load("object_cxr")
    write_fixture(tmp_path / "data")
    out = tmp_path / "out"
    runs = reader.main(
        [
            "--root",
            str(tmp_path / "data"),
            "--size",
            "64",
            "--epochs",
            "1",
            "--seeds",
            "0",
            "--archs",
            "resnet18",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert len(runs) == 1 and "NormGrad Conv3x3 (M)" in runs[0].scores["trained"]
    assert (out / "tables.md").read_text().startswith("Object-CXR")


# ---------------------------------------------------------------------------------------
# the protocol's quick path, on a reduced size


def test_protocol_quick_path(tmp_path: Path) -> None:
    protocol = load("protocol")
    runs = protocol.main(
        [
            "--quick",
            "--size",
            "64",
            "--train",
            "48",
            "--test",
            "16",
            "--epochs",
            "1",
            "--seeds",
            "0",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    archs = ("resnet18", "efficientnet_b0")
    assert [(r.arch, r.seed) for r in runs] == [
        ("resnet18", 0),
        ("resnet18", 1),
        ("efficientnet_b0", 0),
        ("efficientnet_b0", 1),
    ]
    for run in runs:
        assert set(run.scores) == {"trained", "semi-randomised", "fully-randomised"}
        trained = run.scores["trained"]
        for name in (
            "NormGrad Scaling",
            "NormGrad Conv3x3 (M)",
            "Grad-CAM",
            "Guided Grad-CAM",
            "Input x Gradient",
            "Guided Backprop",
        ):
            assert 0.0 <= trained[name] <= 1.0
            assert f"{name} (smoothed)" in trained
        assert "centre map" in trained and "random point" in trained
        assert 0.0 <= run.auc <= 1.0
        assert 0.0 <= run.energy["NormGrad Conv3x3 (M)"] <= 1.0
        assert 0.0 <= run.froc["Grad-CAM"] <= 1.0
        for column in ("iou", "hit_rate", "auprc"):
            assert 0.0 <= run.localization[column]["Grad-CAM"] <= 1.0
    text = (tmp_path / "tables.md").read_text()
    for heading in ("Classifiers", "Table 2", "Tables 3-4", "Tables 5-6", "FROC", "AUPRC"):
        assert heading in text
    assert "| NormGrad Conv1x1 (M) |" in text
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("architecture,seed,condition,method,pointing_game,energy,froc")
    assert rows[0].endswith(",iou,hit_rate,auprc")
    table = list(csv.DictReader(rows))
    grad_cam = [r for r in table if r["method"] == "Grad-CAM" and r["condition"] == "trained"]
    assert grad_cam and all(0.0 <= float(r["auprc"]) <= 1.0 for r in grad_cam)
    figures = sorted(f.name for f in (tmp_path / "figures").glob("*.png"))
    assert figures == sorted(
        [
            *(f"{a}_seed0_example0_{g}.png" for a in archs for g in ("normgrad", "baselines")),
            *(f"curves_{a}_{c}.png" for a in archs for c in ("trained", "fully-randomised")),
        ]
    )
    # the curves' tables, read from the recorded distances: one per architecture
    assert text.count("| method | 1.6 px | 3.2 px | 6.4 px | 12.8 px | area |") == 2
    tolerance = protocol.Config(size=64).pointing_tolerance
    for run in runs:
        for condition in ("trained", "semi-randomised", "fully-randomised"):
            distances = run.distances[condition]["NormGrad Conv3x3 (M)"]
            assert len(distances) == run.positives == 8
            # the hit at the run's tolerance is the distance read at that tolerance
            hits = sum(d < tolerance or d == 0 for d in distances) / len(distances)
            assert hits == run.scores[condition]["NormGrad Conv3x3 (M)"]
    summary = (tmp_path / "summary.md").read_text()
    assert "**resnet18**: test accuracy" in summary and "cells of" in summary


def test_a_stopped_protocol_keeps_the_runs_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-seed results are written after each run, so a run stopped by a time limit
    (a lease of a GPU) keeps every run it finished, in the files the report reads."""
    protocol = load("protocol")
    classify = protocol.classify
    calls: list[int] = []

    def stopping(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:  # the second model: stopped as a time limit would stop it
            raise KeyboardInterrupt
        return classify(*args, **kwargs)

    monkeypatch.setattr(protocol, "classify", stopping)
    argv = ["--archs", "resnet18", "--size", "48", "--train", "32", "--test", "16"]
    argv += ["--epochs", "1", "--seeds", "0", "1", "--figures", "0", "--quiet"]
    with pytest.raises(KeyboardInterrupt):
        protocol.main([*argv, "--out", str(tmp_path)])
    results = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {(r["architecture"], r["seed"]) for r in results} == {("resnet18", "0")}
    curves = list(csv.DictReader((tmp_path / "curves.csv").open()))
    assert curves and {r["seed"] for r in curves} == {"0"}
    assert not (tmp_path / "tables.md").exists()  # the report comes at the end


# ---------------------------------------------------------------------------------------
# pictures


def test_viz_overlay_and_compare(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from normgrad import viz

    image = torch.rand(3, 32, 32)
    saliency = torch.zeros(1, 32, 32)
    saliency[0, 10, 20] = 1.0
    assert viz.pointed(saliency) == (20, 10)
    ax = viz.overlay(image, saliency, torch.tensor([[18, 8, 22, 12]]), title="map")
    assert ax.get_title() == "map"
    assert len(ax.patches) == 1
    assert len(ax.lines) == 2  # the point's two crosses
    assert viz.pointed(torch.zeros(1, 32, 32)) is None  # a constant map points nowhere
    assert len(viz.overlay(image, torch.zeros(1, 32, 32)).lines) == 0
    fig = viz.compare(image, {"a": saliency, "b": saliency}, columns=2)
    assert len(fig.axes) == 4  # 3 panels on a 2 x 2 grid
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0
    with pytest.raises(ValueError, match=r"saliency: expected the image's size \(32, 32\)"):
        viz.overlay(image, torch.rand(16, 16))


def test_viz_is_reachable_lazily() -> None:
    import sys

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import normgrad

    viz = normgrad.viz  # the module-level __getattr__ imports it on first use
    assert viz is sys.modules["normgrad.viz"]
    image = torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(0))
    peak = torch.zeros(1, 8, 10)
    peak[0, 2, 3] = 1.0
    ramp = torch.linspace(0, 1, 80).view(8, 10)  # last pixel largest
    boxes = torch.tensor([[1, 1, 4, 5]])
    fig = viz.compare(image, {"peak": peak, "ramp": ramp}, boxes)
    try:
        # one row: the image, then one panel per map, in the dict's order
        assert [ax.get_title() for ax in fig.axes] == ["image", "peak", "ramp"]
        # a 3-channel image is shown in colour (H, W, 3), rescaled to [0, 1]
        grey = ((image - image.min()) / (image.max() - image.min())).permute(1, 2, 0).numpy()
        first = fig.axes[0]
        np.testing.assert_allclose(np.asarray(first.images[0].get_array()), grey, rtol=1e-6)
        assert not first.lines  # no pointed maximum on the image panel
        for ax, shown, point in zip(fig.axes[1:], (peak[0], ramp), ((3, 2), (9, 7))):
            grey_layer, map_layer = ax.images
            np.testing.assert_allclose(np.asarray(grey_layer.get_array()), grey, rtol=1e-6)
            np.testing.assert_allclose(np.asarray(map_layer.get_array()), shown.numpy())
            assert map_layer.get_clim() == (0, 1)
            # the pointed first maximum (x, y), drawn as two crosses
            assert [tuple(line.get_xydata()[0]) for line in ax.lines] == [point, point]
        # the box on every panel: inclusive pixels 1..4 by 1..5 -> a 4 x 5 rectangle
        for ax in fig.axes:
            (box,) = ax.patches
            assert (box.get_x(), box.get_y()) == (0.5, 0.5)
            assert (box.get_width(), box.get_height()) == (4, 5)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------
# vision transformers: the quick path of examples/vision_transformers.py


def test_transformers_quick_path(tmp_path: Path) -> None:
    example = load("vision_transformers")
    threads = torch.get_num_threads()
    results = example.main(["--quick", "--out", str(tmp_path), "--quiet"])
    assert torch.get_num_threads() == threads  # restored
    assert [r.arch.name for r in results] == ["ViT", "Swin"]
    text = (tmp_path / "tables.md").read_text()
    for result in results:
        name = result.arch.name
        assert f"| {name} | " in text  # the classifier's row
        for heading in ("single layers", "constant maps", "multi-layer NormGrad"):
            assert f"### {name}: {heading}" in text
        for layer in result.arch.candidates:
            # what it is, its Pointing Game and its constant maps: three tables' rows
            assert text.count(f"| `{layer}` |") == 3
        for label in result.arch.multi:
            assert f"| {label}: " in text
        assert set(result.scores) == {"trained", "fully-randomised"}
        for scores in result.scores.values():
            assert all(0.0 <= row.accuracy <= 1.0 for row in scores.values())
        assert 0.0 <= result.auc <= 1.0
    # only the class token is read after the last ViT block: its maps are all constant
    last = "encoder.layers.encoder_layer_3"
    vit = results[0]
    assert vit.constant[last] == (1.0, 1.0, 0.0)
    assert vit.constant[f"{last}.ln_1"][0] == 0.0
    assert vit.scores["trained"][f"NormGrad conv1x1 @ {last}"].accuracy == 0.0
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert figures == ["swin.png", "vit.png"]


# ---------------------------------------------------------------------------------------
# the transformers' token layers: the quick path of examples/token_layers.py


def test_token_layers_quick_path(tmp_path: Path) -> None:
    example = load("token_layers")
    text = example.main(["--quick", "--out", str(tmp_path), "--quiet"])
    assert (tmp_path / "token-layers.md").read_text() == text
    for arch in ("small_vit", "small_swin"):
        section = text.split(f"**{arch}**")[1].split("\n\n**")[0]
        rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
        layers = example.token_layers(arch, 32)
        assert len(rows) == len(layers) + 2  # every layer, the centre map, the random point
        for row, layer in zip(rows, layers):
            assert row.startswith(f"| `{layer.name.removeprefix(example.VIT_PREFIX)}`")
        for row in rows:
            values = [float(v) for v in row.strip("| ").split("|")[-3:]]
            assert all(0.0 <= v <= 1.0 for v in values)
    # the preset's layers are marked: the Swin's stage output is its multi-layer set's first
    assert "| `features.1` (M) | stage output |" in text
    assert "| `features.3.1.norm1` (S, M) | attention input |" in text
    assert "| `encoder_layer_3.ln_1` (S, M) | attention input |" in text


def test_committed_token_layers_are_the_scripts() -> None:
    """The reproduction page's token-layer tables name every layer the script measures at
    the full mode's size, in its order, and each row's values are hit rates."""
    example = load("token_layers")
    committed = Path(__file__).resolve().parents[1] / "docs/results/full/token-layers.md"
    text = committed.read_text()
    assert "python examples/token_layers.py" in text
    for arch in ("small_vit", "small_swin"):
        section = text.split(f"**{arch}**: 5 seed(s)")[1].split("\n\n**")[0]
        rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
        names = [
            layer.name.removeprefix(example.VIT_PREFIX) for layer in example.token_layers(arch, 96)
        ]
        assert [row.split("`")[1] for row in rows[:-2]] == names
        assert [row.split(" |")[0] for row in rows[-2:]] == ["| centre map", "| random point"]


def test_token_layers_refuse_a_misread_token_grid() -> None:
    """The hand-read maps are checked against NormGrad's: a grid read with the wrong
    layout (a Swin's channels-last tokens read as channels-first) is refused."""
    example = load("token_layers")
    protocol = load("protocol")
    model = protocol.build_model("small_swin", 0, 32).eval()
    x, labels = torch.randn(2, 3, 32, 32), torch.ones(2, dtype=torch.long)
    right = example.TokenLayer("features.1", "stage output", "nhwc")
    maps = example.check_against_normgrad(model, [right], x, labels)
    assert maps["features.1"]["|a| |g|"].shape == (2, 1, 4, 4)
    wrong = example.TokenLayer("features.1", "stage output", "nchw")
    with pytest.raises(AssertionError, match="differs from NormGrad conv1x1"):
        example.check_against_normgrad(model, [wrong], x, labels)
    assert all(p.grad is None for p in model.parameters())  # nothing written to the model


# ---------------------------------------------------------------------------------------
# the distributed example, under torchrun with two gloo processes on localhost


def test_distributed_example_under_torchrun(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("needs torch.distributed gloo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).resolve().parent.parent / "examples" / "distributed.py"
    small = ["--images", "7", "--size", "48", "--batch", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    launch += ["--master_addr=127.0.0.1", f"--master_port={port}", str(script)]
    two = subprocess.run(
        [*launch, *small, "--out", str(tmp_path / "two"), "--resume"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "7 images on 2 process(es)" in two.stdout
    one = subprocess.run(
        [sys.executable, str(script), *small, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    # the same images and methods, each once; in float32 a batch of other images may move a
    # maximum by a pixel where two nearly tie (tests/test_distributed.py: float64, identical)
    keyed = {}
    for run in ("one", "two"):
        with (tmp_path / run / "records.csv").open() as f:
            keyed[run] = [(r["image"], r["method"]) for r in csv.DictReader(f)]
    assert keyed["one"] == keyed["two"] and len(set(keyed["two"])) == len(keyed["two"])
    assert {i for i, _ in keyed["two"]} == {str(i) for i in range(7)}
    assert (tmp_path / "two" / "progress.rank1-of-2.csv").is_file()
