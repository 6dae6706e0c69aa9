"""Pictures: colour images, slices of volumes, saving a figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from normgrad import ArgumentTypeError, InvalidArgumentError, ShapeError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")
from normgrad import viz  # noqa: E402  (after the backend is chosen)


@pytest.fixture(autouse=True)
def _close_figures() -> object:
    yield
    plt.close("all")


def _rectangles(ax: object) -> list[tuple[float, float, float, float]]:
    return [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches]  # type: ignore[attr-defined]


def _cross(ax: object) -> tuple[float, float]:
    (x, y), _ = (tuple(line.get_xydata()[0]) for line in ax.lines)  # type: ignore[attr-defined]
    return x, y


def test_colour_image_is_shown_in_colour_rescaled() -> None:
    image = torch.zeros(3, 4, 5)
    image[0, 1, 2] = 2.0  # red pixel at its brightest
    image[2, 3, 4] = 1.0  # half-bright blue
    ax = viz.overlay(image, torch.rand(4, 5))
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (4, 5, 3)
    expected = np.zeros((4, 5, 3))
    expected[1, 2] = (1.0, 0.0, 0.0)
    expected[3, 4] = (0.0, 0.0, 0.5)
    np.testing.assert_allclose(shown, expected)


def test_grey_image_stays_grey_and_constant_image_is_black() -> None:
    ax = viz.overlay(torch.full((1, 4, 4), 7.0), torch.rand(1, 4, 4))
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (4, 4)
    assert not shown.any()


def test_overlay_returns_axes_whose_figure_saves(tmp_path: Path) -> None:
    ax = viz.overlay(torch.rand(3, 16, 16), torch.rand(16, 16), title="map")
    ax.figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes().startswith(b"\x89PNG")


def _volume_with_peak() -> tuple[torch.Tensor, torch.Tensor]:
    volume = torch.arange(6 * 8 * 10, dtype=torch.float32).reshape(6, 8, 10)
    saliency = torch.zeros(1, 6, 8, 10)
    saliency[0, 3, 5, 7] = 1.0  # z=3, y=5, x=7
    return volume, saliency


@pytest.mark.parametrize(
    ("axis", "plane", "cross"),
    [(0, (8, 10), (7, 5)), (1, (6, 10), (7, 3)), (2, (6, 8), (5, 3))],
)
def test_volume_slice_through_the_maximum(
    axis: int, plane: tuple[int, int], cross: tuple[int, int]
) -> None:
    volume, saliency = _volume_with_peak()
    ax = viz.overlay(volume, saliency, index="max", axis=axis)
    image_layer, map_layer = ax.images
    expected = volume.select(axis, (3, 5, 7)[axis])
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(np.asarray(image_layer.get_array()), expected.numpy(), rtol=1e-6)
    assert np.asarray(map_layer.get_array()).shape == plane
    assert np.asarray(map_layer.get_array()).max() == 1.0
    assert _cross(ax) == cross


def test_volume_boxes_cut_by_the_slice() -> None:
    volume, saliency = _volume_with_peak()
    # x 2..6, y 4..7, z 1..3, inclusive
    boxes = torch.tensor([[2, 4, 1, 6, 7, 3]])
    for index, drawn in ((0, []), (1, [(1.5, 3.5, 5, 4)]), (3, [(1.5, 3.5, 5, 4)]), (4, [])):
        ax = viz.overlay(volume, saliency, boxes, index=index, axis=0)
        assert _rectangles(ax) == drawn, index
    # a slice along x (axis 2) at x=4 shows the (z, y) plane: y across, z down
    ax = viz.overlay(volume, saliency, boxes, index=4, axis=2)
    assert _rectangles(ax) == [(3.5, 0.5, 4, 3)]
    # negative indices count from the end, as in Python
    ax = viz.overlay(volume, saliency, boxes, index=-5, axis=0)
    assert _rectangles(ax) == [(1.5, 3.5, 5, 4)]


def test_compare_shows_one_slice_on_every_panel() -> None:
    volume, saliency = _volume_with_peak()
    other = torch.rand(6, 8, 10)
    fig = viz.compare(volume, {"peak": saliency, "noise": other}, index="max")
    assert [ax.get_title() for ax in fig.axes] == ["image", "peak", "noise"]
    expected = other[3].numpy()
    np.testing.assert_allclose(np.asarray(fig.axes[2].images[1].get_array()), expected)


def test_volume_errors_say_how_to_choose_a_slice() -> None:
    volume, saliency = _volume_with_peak()
    with pytest.raises(ShapeError, match=r"image: expected an image .* index= .* axis="):
        viz.overlay(volume, saliency)
    with pytest.raises(ShapeError, match=r"saliency: expected a map .* choose a slice"):
        viz.overlay(torch.rand(3, 8, 10), saliency)
    with pytest.raises(ShapeError, match=r"with index= expected a volume .*leave index out"):
        viz.overlay(torch.rand(8, 10), torch.rand(8, 10), index=0)
    with pytest.raises(InvalidArgumentError, match=r"index: expected a slice in \[0, 6\)"):
        viz.overlay(volume, saliency, index=6)
    with pytest.raises(InvalidArgumentError, match=r"axis: expected 0, 1 or 2, got 3"):
        viz.overlay(volume, saliency, index=0, axis=3)
    with pytest.raises(ArgumentTypeError, match=r"index: expected an int, 'max' or None"):
        viz.overlay(volume, saliency, index="middle")
    with pytest.raises(ShapeError, match=r"expected the volume's size \(6, 8, 10\)"):
        viz.overlay(volume, torch.rand(6, 8, 9), index=0)
    with pytest.raises(ShapeError, match=r"\(a channels-last image \(H, W, 3\) is"):
        viz.overlay(torch.rand(8, 10, 3), torch.rand(8, 10))


def _curves() -> dict[str, object]:
    from normgrad import metrics

    near = torch.tensor([0.0, 1.5, 3.0, 9.0, float("nan")], dtype=torch.float64)
    far = torch.tensor([2.0, 6.0, 7.0, float("inf")], dtype=torch.float64)
    return {
        "NormGrad": metrics.pointing_game_curve(near, max_tolerance=12),
        "Grad-CAM": metrics.pointing_game_curve(far, tolerances=[0, 4, 8, 12]),
    }


def test_pointing_game_curves_draw_every_method_the_tolerance_and_the_cells(
    tmp_path: Path,
) -> None:
    curves = _curves()
    ax = viz.pointing_game_curves(
        curves,  # type: ignore[arg-type]
        tolerance=2.4,
        cells={"NormGrad": 8, "Grad-CAM": 32},
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "NormGrad (AUC 0.72; cell 8 px)",
        "Grad-CAM (AUC 0.44; cell 32 px)",
        "tolerance 2.4 px",
    ]
    curve_lines = {line.get_label(): line for line in ax.lines}
    x, y = curve_lines["Grad-CAM (AUC 0.44; cell 32 px)"].get_xydata().T
    assert x.tolist() == [0, 4, 8, 12]
    assert y.tolist() == [0, 0.25, 0.75, 0.75]
    verticals = [line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1]
    assert 2.4 in verticals and 8 in verticals  # the cell beyond 12 px is only named
    ring = [line for line in ax.lines if line.get_marker() == "o"]
    assert [tuple(r.get_xydata()[0]) for r in ring] == [(8.0, 0.75)]
    assert ax.get_xlim() == (0, 12)
    assert ax.get_title().endswith("(AUC to 12 px)")
    assert min(t.get_fontsize() for t in ax.get_legend().get_texts()) >= 9
    assert ax.xaxis.label.get_fontsize() >= 9
    ax.figure.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_pointing_game_curves_name_each_area_end_when_they_differ() -> None:
    from normgrad import metrics

    d = torch.tensor([1.0, 3.0], dtype=torch.float64)
    a = metrics.pointing_game_curve(d, max_tolerance=4)
    b = metrics.pointing_game_curve(d, max_tolerance=8)
    ax = viz.pointing_game_curves({"a": a, "b": b}, unit="mm", intervals=False)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a (AUC 0.50 to 4 mm)", "b (AUC 0.75 to 8 mm)"]
    assert ax.get_xlabel() == "tolerance (mm)"
    assert not ax.collections  # no interval bands
    one = viz.pointing_game_curves(a, title=None)
    assert [t.get_text() for t in one.get_legend().get_texts()] == ["AUC 0.50"]


def test_pointing_game_curves_errors() -> None:
    curves = _curves()
    with pytest.raises(InvalidArgumentError, match="cells: expected names of curves"):
        viz.pointing_game_curves(curves, cells={"ResNet": 8})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="cells\\['NormGrad'\\]"):
        viz.pointing_game_curves(curves, cells={"NormGrad": 0})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="tolerance"):
        viz.pointing_game_curves(curves, tolerance=-1)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="PointingGameCurve"):
        viz.pointing_game_curves({"x": 0.5})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="at least one"):
        viz.pointing_game_curves({})
