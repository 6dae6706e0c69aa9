"""Volumes (N, C, D, H, W): the same code paths as images, checked in 3-D."""

from __future__ import annotations

import copy

import captum.attr as ca
import pytest
import torch
import torch.nn.functional as tf

import normgrad
from normgrad import ShapeError, metrics

from .example_modules import load
from .explainers import EXPLAINERS
from .lifecycle import assert_unchanged, snapshot
from .models import TinyCNN, TinyCNN3d, seeded, without_inplace
from .reference.layers import reference_features_normgrad

MODEL = seeded(TinyCNN3d())
SIZE = 6


def _x(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 2, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("vil", "kind", "k"),
    [
        ("scaling", "scaling", 1),
        ("conv1x1", "conv", 1),
        ("conv3x3", "conv", 3),
        ("conv3x3x3", "conv", 3),
    ],
)
@pytest.mark.parametrize("layers", [["relu1"], ["bn1", "conv2"]])
def test_normgrad_on_volumes_matches_hand_written(
    vil: str, kind: str, k: int, layers: list[str]
) -> None:
    x = _x()
    target = torch.tensor([2, 0])
    expected = reference_features_normgrad(MODEL, x, layers, kind, k, target)
    actual = normgrad.NormGrad(MODEL, layers, vil)(x, target)
    assert actual.shape == (2, 1, SIZE, SIZE, SIZE)
    n = len(layers)
    torch.testing.assert_close(actual.double() ** n, expected**n, rtol=1e-4, atol=2e-5)


def test_in_place_relu_and_batch_equivalence_on_volumes() -> None:
    x = _x(3)
    layers = ["bn1", "conv2"]
    inplace = normgrad.NormGrad(MODEL, layers, "conv3x3")(x, 1)
    plain = normgrad.NormGrad(without_inplace(MODEL), layers, "conv3x3")(x, 1)
    torch.testing.assert_close(inplace, plain)
    single = torch.cat(
        [normgrad.NormGrad(MODEL, layers, "conv3x3")(x[i : i + 1], 1) for i in range(3)]
    )
    torch.testing.assert_close(inplace, single, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_every_explainer_handles_volumes(method: str) -> None:
    model = seeded(TinyCNN3d())
    x = _x(2, seed=1)
    model.train()
    before = snapshot(model, x)
    saliency = EXPLAINERS[method](model, ["relu1", "conv2"])(x, torch.tensor([0, 1]))
    assert saliency.shape == (2, 1, SIZE, SIZE, SIZE)
    assert bool(torch.isfinite(saliency).all()) and saliency.min() >= 0 and saliency.max() <= 1
    assert_unchanged(before, snapshot(model, x))
    with pytest.raises(normgrad.NormGradError):
        EXPLAINERS[method](model, ["relu1", "conv2"])(x, 9)
    assert_unchanged(before, snapshot(model, x))


def test_gradient_and_grad_cam_on_volumes_agree_with_captum() -> None:
    x = _x(2, seed=2)
    target = torch.tensor([1, 2])
    ours = normgrad.Gradient(MODEL).explain(x, target)
    theirs = ca.Saliency(copy.deepcopy(MODEL)).attribute(
        x.clone().requires_grad_(), target=target, abs=True
    )
    torch.testing.assert_close(ours.raw, theirs.sum(1, keepdim=True), rtol=1e-4, atol=1e-6)
    clone = copy.deepcopy(MODEL)
    cam = ca.LayerGradCam(clone, clone.conv2).attribute(
        x.clone().requires_grad_(), target=target, relu_attributions=True
    )
    upsampled = tf.interpolate(
        cam.detach(), size=(SIZE,) * 3, mode="trilinear", align_corners=False
    )
    torch.testing.assert_close(
        normgrad.GradCAM(MODEL, "conv2").explain(x, target).raw, upsampled, rtol=1e-4, atol=1e-6
    )


def test_wrong_rank_names_what_was_expected() -> None:
    with pytest.raises(
        ShapeError,
        match=r"x: expected a 5-D batch \(N, C, D, H, W\) for the first layer 'conv1' \(Conv3d\), got a 4-D tensor",
    ):
        normgrad.NormGrad(MODEL, "conv2", "conv3x3")(torch.randn(2, 2, SIZE, SIZE))
    with pytest.raises(
        ShapeError,
        match=r"x: expected a 4-D batch \(N, C, H, W\) for the first layer 'conv1' \(Conv2d\), got a 5-D tensor",
    ):
        normgrad.NormGrad(seeded(TinyCNN()), "conv2", "conv3x3")(torch.randn(1, 3, 4, 8, 8))
    with pytest.raises(
        normgrad.InvalidArgumentError, match="vil: 'conv3x3x3' needs 3 spatial dimensions"
    ):
        normgrad.NormGrad(seeded(TinyCNN()), "conv2", "conv3x3x3")(torch.randn(1, 3, 8, 8))


def test_pointing_game_in_3d_with_anisotropic_spacing() -> None:
    saliency = torch.zeros(1, 1, 10, 10, 10)
    saliency[0, 0, 5, 5, 5] = 1.0  # point (z, y, x) = (5, 5, 5)
    box = [torch.tensor([[5, 5, 8, 5, 5, 8]])]  # one voxel at z = 8, y = 5, x = 5
    assert metrics.pointing_game(saliency, box, tolerance=3.5).item() == 1.0
    assert metrics.pointing_game(saliency, box, tolerance=3).item() == 0.0  # on the sphere
    # 3 voxels of 2 mm along z = 6 mm
    assert metrics.pointing_game(saliency, box, tolerance=5, spacing=(2.0, 1.0, 1.0)).item() == 0.0
    assert (
        metrics.pointing_game(saliency, box, tolerance=6.5, spacing=(2.0, 1.0, 1.0)).item() == 1.0
    )
    mask = torch.zeros(1, 10, 10, 10, dtype=torch.bool)
    mask[0, 8, 5, 5] = True
    assert (
        metrics.pointing_game(saliency, mask, tolerance=6.5, spacing=(2.0, 1.0, 1.0)).item() == 1.0
    )


def test_time_series_recipe_fold_slices_into_the_batch() -> None:
    # LVOT-style 2-D + time: (N, T, C, H, W) -> explain (N*T, C, H, W) -> (N, T, 1, H, W)
    model = seeded(TinyCNN())
    clips = torch.randn(2, 4, 3, 12, 12)
    explainer = normgrad.NormGrad(model, ["conv2", "conv3"], "conv3x3")
    maps = explainer(clips.flatten(0, 1), 1).unflatten(0, (2, 4))
    assert maps.shape == (2, 4, 1, 12, 12)
    torch.testing.assert_close(maps[1, 2], explainer(clips[1, 2:3], 1)[0], rtol=1e-4, atol=1e-4)


def test_volume_generator_boxes_match_the_inclusions() -> None:
    example = load("volume")
    volumes, labels, boxes = example.make_volumes(6, size=14, seed=3)  # type: ignore[attr-defined]
    clean, _, _ = example.make_volumes(6, size=14, seed=3, intensity=0.0)  # type: ignore[attr-defined]
    for i in range(6):
        if labels[i] == 0:
            assert boxes[i].shape == (0, 6)
            continue
        added = (volumes[i, 0] - clean[i, 0]).abs() > 0.5
        zs, ys, xs = torch.nonzero(added, as_tuple=True)
        expected = [xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()]
        assert boxes[i].tolist() == [[int(v) for v in expected]]


def test_volume_example_points_at_the_inclusion() -> None:
    example = load("volume")
    scores = example.run(steps=25, size=16, n_eval=24, log=False)  # type: ignore[attr-defined]
    assert scores["classifier accuracy"] >= 0.9
    assert scores["NormGrad conv3x3 (M)"] >= 0.8
    assert scores["NormGrad conv3x3 (M)"] > scores["centre map"] + 0.3
    assert scores["NormGrad conv3x3 (M)"] > scores["random point"] + 0.3
