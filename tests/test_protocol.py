"""Randomisation checks, layer presets, the centre map and the evaluation runner."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

import normgrad
from normgrad import InvalidArgumentError, LayerError, functional, metrics, presets, sanity

from .models import TinyCNN, seeded
from .reference.pointing import reference_box_hits


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


RESNET = seeded(torchvision.models.resnet18(num_classes=3))


# ---------------------------------------------------------------------------------------
# randomisation


def test_semi_randomisation_changes_only_the_classifier() -> None:
    before = _state(RESNET)
    semi = sanity.randomize(RESNET, "semi", seed=1)
    assert _same_state(_state(RESNET), before)
    after = semi.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"} or changed == {"fc.weight"}
    assert semi is not RESNET and semi.fc is not RESNET.fc


def test_full_randomisation_changes_every_weight_and_is_seeded() -> None:
    before = _state(RESNET)
    full = sanity.randomize(RESNET, "full", seed=1)
    assert _same_state(_state(RESNET), before)
    for name, param in full.named_parameters():
        if param.ndim >= 2:
            assert not torch.equal(param, RESNET.get_parameter(name)), name
            fan_in = param[0].numel()
            assert param.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.35), name
    assert full.bn1.running_var.eq(1).all() and full.bn1.running_mean.eq(0).all()
    again = sanity.randomize(RESNET, "full", seed=1)
    other = sanity.randomize(RESNET, "full", seed=2)
    assert _same_state(_state(full), _state(again))
    assert not _same_state(_state(full), _state(other))


def test_semi_randomisation_of_a_named_layer() -> None:
    model = seeded(TinyCNN())
    semi = sanity.randomize(model, "semi", layer="conv3")
    assert not torch.equal(semi.conv3.weight, model.conv3.weight)
    assert torch.equal(semi.fc.weight, model.fc.weight)
    by_module = sanity.randomize(model, "semi", layer=model.conv3)
    assert torch.equal(by_module.conv3.weight, semi.conv3.weight)


def test_randomisation_errors() -> None:
    with pytest.raises(InvalidArgumentError, match=r"mode: expected 'semi' or 'full', got 'half'"):
        sanity.randomize(RESNET, "half")
    with pytest.raises(LayerError, match=r"has no nn\.Linear"):
        sanity.randomize(nn.Sequential(nn.Conv2d(1, 1, 1)), "semi")


def test_cascade_blocks_of_torchvision_models() -> None:
    blocks = sanity.cascade_blocks(RESNET)
    assert blocks[:3] == ["fc", "layer4.1", "layer4.0"]
    assert blocks[-2:] == ["bn1", "conv1"]
    eff = sanity.cascade_blocks(torchvision.models.efficientnet_b0(num_classes=2))
    assert eff[:3] == ["classifier.1", "features.8", "features.7"]


def test_cascading_randomisation() -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = _state(RESNET)
    result = sanity.cascading_randomization(
        lambda m: normgrad.Gradient(m), RESNET, x, blocks=["fc", "layer4", "layer3"], keep_maps=True
    )
    assert _same_state(_state(RESNET), before)
    assert result.spearman.shape == (3, 2)
    assert result.saliency is not None and result.saliency.shape == (4, 2, 1, 64, 64)
    assert bool(((result.spearman >= -1) & (result.spearman <= 1)).all())
    # the gradient depends on the weights: randomising three blocks decorrelates it
    assert result.mean()[-1] < 0.9
    # a map that ignores the model stays identical at every step
    centre = sanity.cascading_randomization(
        lambda m: normgrad.CenterMap(m), RESNET, x, blocks=["fc", "layer4"]
    )
    torch.testing.assert_close(centre.spearman, torch.ones(2, 2, dtype=torch.float64))


# ---------------------------------------------------------------------------------------
# presets and the centre map


@pytest.mark.parametrize("arch", presets.available())
def test_presets_name_real_layers(arch: str) -> None:
    size = 64
    extra = {"image_size": size} if arch.startswith("vit") else {}
    model = getattr(torchvision.models, arch)(num_classes=2, **extra)
    if arch.startswith("vit"):  # torchvision starts a ViT's head at zero: no gradient at all
        torch.nn.init.normal_(model.heads.head.weight)
    preset = presets.layers(arch)
    names = dict(model.named_modules())
    assert preset.single in names
    assert all(name in names for name in preset.multi)
    result = normgrad.NormGrad(model, preset.multi, "conv1x1").explain(
        torch.randn(1, 3, size, size)
    )
    assert result.saliency.shape == (1, 1, size, size)
    assert all(not bool(functional.is_constant(m)) for m in result.raw_layer_maps.values())


def test_paper_methods_are_the_papers_ten_on_the_presets_layers() -> None:
    model = torchvision.models.resnet18(num_classes=2)
    preset = presets.layers("resnet18")
    made = presets.paper_methods(model, "resnet18")
    by_hand = {
        "NormGrad Scaling": normgrad.NormGrad(model, preset.single, "scaling"),
        "NormGrad Scaling (M)": normgrad.NormGrad(model, preset.multi, "scaling"),
        "NormGrad Conv1x1": normgrad.NormGrad(model, preset.single, "conv1x1"),
        "NormGrad Conv1x1 (M)": normgrad.NormGrad(model, preset.multi, "conv1x1"),
        "NormGrad Conv3x3": normgrad.NormGrad(model, preset.single, "conv3x3"),
        "NormGrad Conv3x3 (M)": normgrad.NormGrad(model, preset.multi, "conv3x3"),
        "Input x Gradient": normgrad.InputXGradient(model),
        "Guided Backprop": normgrad.GuidedBackprop(model),
        "Grad-CAM": normgrad.GradCAM(model, preset.single),
        "Guided Grad-CAM": normgrad.GuidedGradCAM(model, preset.single),
    }
    assert list(made) == list(by_hand)
    assert [repr(e) for e in made.values()] == [repr(e) for e in by_hand.values()]
    assert all(e.model is model for e in made.values())
    own = presets.LayerPreset("layer3.1", ["layer2.1", "layer3.1"])
    assert repr(presets.paper_methods(model, own)["Grad-CAM"]) == repr(
        normgrad.GradCAM(model, "layer3.1")
    )
    with pytest.raises(normgrad.ArgumentTypeError, match="preset: expected a LayerPreset"):
        presets.paper_methods(model, ["layer4"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="did you mean"):
        presets.paper_methods(model, "resnet-181")


def test_paper_presets() -> None:
    assert presets.layers("ResNet-34").multi == ["layer2.0", "layer3.0", "layer4.0", "layer4.2"]
    eff = presets.layers("efficientnet_b0")
    assert eff.single == "features.8.2" and len(eff.multi) == 10
    assert eff.multi[0] == "features.0.0" and eff.multi[-2:] == ["features.8.0", "features.8.2"]
    with pytest.raises(
        InvalidArgumentError, match=r"no layer preset for 'resnet152'.*did you mean"
    ):
        presets.layers("resnet152")


@pytest.mark.parametrize(("h", "w", "y", "x"), [(7, 9, 3, 4), (8, 8, 3, 3), (224, 224, 111, 111)])
def test_centre_baseline_points_at_the_centre(h: int, w: int, y: int, x: int) -> None:
    saliency = normgrad.CenterMap()(torch.zeros(2, 3, h, w))
    assert saliency.shape == (2, 1, h, w)
    flat = int(saliency[0, 0].flatten().argmax())
    assert divmod(flat, w) == (y, x)
    assert metrics.pointing_game(saliency, [torch.tensor([[x, y, x, y]])] * 2, 1).tolist() == [
        1.0,
        1.0,
    ]


# ---------------------------------------------------------------------------------------
# the runner


def _data(
    n_batches: int = 3, batch: int = 4, size: int = 64
) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    data = []
    for _ in range(n_batches):
        x = torch.randn(batch, 3, size, size, generator=gen)
        labels = torch.randint(0, 3, (batch,), generator=gen)
        boxes = []
        for _ in range(batch):
            x0, y0 = torch.randint(0, size - 10, (2,), generator=gen).tolist()
            boxes.append(torch.tensor([[x0, y0, x0 + 8, y0 + 8]]))
        boxes[-1] = torch.zeros(0, 4)  # one image per batch without a region
        data.append((x, labels, boxes))
    return data


def _variants(model: nn.Module) -> dict[str, normgrad.Explainer]:
    preset = presets.layers("resnet18")
    out: dict[str, normgrad.Explainer] = {}
    for vil in ("scaling", "conv1x1", "conv3x3"):
        out[f"NormGrad {vil}"] = normgrad.NormGrad(model, preset.single, vil)
        out[f"NormGrad {vil} (M)"] = normgrad.NormGrad(model, preset.multi, vil)
    return out


def test_shared_pass_equals_each_variant_alone() -> None:
    variants = _variants(RESNET)
    x, labels, _ = _data(1)[0]
    shared = normgrad.explain_shared(list(variants.values()), x, labels)  # type: ignore[arg-type]
    for (name, explainer), result in zip(variants.items(), shared):
        alone = explainer.explain(x, labels)
        torch.testing.assert_close(result.saliency, alone.saliency, msg=name)
        assert list(result.layer_maps) == list(alone.layer_maps)


def test_evaluate_shares_one_pass_and_matches_separate_scores() -> None:
    model = RESNET
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        data = _data()
        result = normgrad.evaluate(
            model, _variants(model), data, tolerance=10, smoothing_sigma=1.0, progress=False
        )
    finally:
        handle.remove()
    assert len(calls) == len(data)  # one forward pass per batch for all six variants
    # each variant's maps, scored by a literal per-image loop, give the same counts
    counted: dict[str, list[int]] = {}
    for name, explainer in _variants(model).items():
        counted[name], counted[f"{name} (smoothed)"] = [], []
        for x, labels, boxes in data:
            saliency = explainer(x, labels)
            counted[name] += reference_box_hits(saliency, boxes, 10)
            counted[f"{name} (smoothed)"] += reference_box_hits(
                metrics.smooth(saliency, 1.0), boxes, 10
            )
    counted["centre map"] = []
    for x, _, boxes in data:
        counted["centre map"] += reference_box_hits(normgrad.CenterMap()(x), boxes, 10)
    for name, hits in counted.items():
        assert len(hits) == 9, name  # 3 batches of 4 images, one per batch without a box
        row = result[name]
        assert (row.hits, row.total) == (sum(hits), 9), name
        assert row.accuracy == sum(hits) / 9, name
    # the counts are not all 0 or all 9, so a hit counted as a miss (or back) would show
    assert any(0 < sum(hits) < 9 for hits in counted.values())
    # the random point: the exact mean hit rate of a uniformly random point
    expected_random = []
    for _, _, boxes in data:
        rates = metrics.random_point_hit_rate(boxes, (64, 64), 10)
        expected_random += rates[~torch.isnan(rates)].tolist()
    assert result["random point"].accuracy == pytest.approx(
        sum(expected_random) / len(expected_random)
    )
    table = result.to_markdown()
    assert table.splitlines()[0] == "| method | accuracy | 95% CI | hits / images |"
    assert "| NormGrad conv3x3 (M) |" in table and "| random point |" in table
    csv = result.to_csv().splitlines()
    assert csv[0] == "method,accuracy,ci_low,ci_high,hits,images,tolerance"
    assert len(csv) == 1 + 12 + 2


def test_evaluate_mixes_shared_and_other_explainers(capsys: pytest.CaptureFixture[str]) -> None:
    explainers = {
        "NormGrad": normgrad.NormGrad(RESNET, "layer4.1", "conv1x1"),
        "Grad-CAM": normgrad.GradCAM(RESNET, "layer3.1"),
        "Gradient": normgrad.Gradient(RESNET),
    }
    data = _data(2)
    result = normgrad.evaluate(RESNET, explainers, data, reference_rows=False, progress=True)
    assert [r.method for r in result.rows] == ["NormGrad", "Grad-CAM", "Gradient"]
    assert "evaluate: batch 2/2" in capsys.readouterr().err
    for name, explainer in explainers.items():
        hits = []
        for x, labels, boxes in data:
            hits += reference_box_hits(explainer(x, labels), boxes, 15)  # the default tolerance
        assert len(hits) == 6  # 2 batches of 4 images, one per batch without a box
        assert (result[name].hits, result[name].total) == (sum(hits), 6), name


def test_evaluate_errors() -> None:
    with pytest.raises(normgrad.ArgumentTypeError, match="explainers: expected a non-empty dict"):
        normgrad.evaluate(RESNET, {}, _data(1))
    with pytest.raises(
        normgrad.ArgumentTypeError, match=r"explainers\['x'\]: expected a normgrad explainer"
    ):
        normgrad.evaluate(RESNET, {"x": 3}, _data(1))  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="reserved for the centre map"):
        normgrad.evaluate(RESNET, {"centre map": normgrad.Gradient(RESNET)}, _data(1))
    with pytest.raises(
        InvalidArgumentError, match=r"data: expected batches of \(images, labels, regions\)"
    ):
        normgrad.evaluate(
            RESNET, {"g": normgrad.Gradient(RESNET)}, [torch.zeros(1, 3, 8, 8)], progress=False
        )
