"""The reproduction report (examples/reproduction.py), the paper's tables it reads, the
full mode's transformers and the presets they take."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import normgrad
from normgrad import InvalidArgumentError, functional, presets

from .reference.statistics import reference_sign_flip_p

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):  # type: ignore[no-untyped-def]
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


# ---------------------------------------------------------------------------------------
# presets for transformers of any depth


def test_transformer_recipes_are_the_named_presets() -> None:
    assert presets.vit(12) == presets.layers("vit_b_16")
    swin_t = presets.layers("swin_t")
    assert (presets.swin([2, 2, 6, 2]).single, presets.swin([2, 2, 6, 2]).multi) == (
        swin_t.single,
        swin_t.multi,
    )
    assert presets.vit(8).multi == [
        "encoder.layers.encoder_layer_1",
        "encoder.layers.encoder_layer_3",
        "encoder.layers.encoder_layer_5",
        "encoder.layers.encoder_layer_7.ln_1",
    ]


@pytest.mark.parametrize("depth", [3, 0, 4.0, True, "4"])
def test_vit_recipe_refuses_too_few_blocks(depth: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"depth: expected the number of encoder"):
        presets.vit(depth)  # type: ignore[arg-type]


@pytest.mark.parametrize("depths", [[2], [], [1, 0], [1, 2.0]])
def test_swin_recipe_refuses_bad_depths(depths: list[object]) -> None:
    with pytest.raises(InvalidArgumentError, match=r"depths: expected the number of blocks"):
        presets.swin(depths)  # type: ignore[arg-type]


@pytest.mark.parametrize(("depth", "depths"), [(4, [1, 1, 2]), (6, [1, 2, 1, 2])])
def test_recipes_name_layers_that_carry_maps(depth: int, depths: list[int]) -> None:
    """Every layer of a recipe exists in a torchvision model of that shape and gives a map
    with spatial information (the ViT's head started non-zero: torchvision's is zero)."""
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=depth, num_heads=2, hidden_dim=16,
        mlp_dim=32, num_classes=2,
    )  # fmt: skip
    torch.nn.init.normal_(vit.heads.head.weight)
    swin = torchvision.models.SwinTransformer(
        patch_size=[2, 2], embed_dim=16, depths=depths, num_heads=[2] * len(depths),
        window_size=[2, 2], num_classes=2,
    )  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    for model, preset in ((vit, presets.vit(depth)), (swin, presets.swin(depths))):
        result = normgrad.NormGrad(model.eval(), preset.multi, "conv1x1").explain(x)
        assert set(result.raw_layer_maps) == set(preset.multi)
        assert all(not functional.is_constant(m).any() for m in result.raw_layer_maps.values())


def test_full_mode_transformers_take_their_presets() -> None:
    protocol = load("protocol")
    for name in ("small_vit", "small_swin"):
        model = protocol.build_model(name, 0, 96)
        names = dict(model.named_modules())
        layers = protocol.architecture(name).layers
        assert all(layer in names for layer in [layers.single, *layers.multi]), name
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 2)


# ---------------------------------------------------------------------------------------
# the exact sign-flip test


small = st.integers(-40, 40).map(lambda k: k / 40)


@given(st.lists(small, min_size=1, max_size=7))
def test_sign_flip_p_is_the_literal_enumeration(differences: list[float]) -> None:
    reproduction = load("reproduction")
    assert reproduction.sign_flip_p(differences) == pytest.approx(
        reference_sign_flip_p(differences), abs=1e-12
    )


@given(st.lists(small, min_size=2, max_size=7).filter(lambda d: any(d)))
def test_sign_flip_p_agrees_with_scipy(differences: list[float]) -> None:
    reproduction = load("reproduction")
    expected = stats.permutation_test(
        (np.array(differences, dtype=np.float64),),
        np.mean,
        permutation_type="samples",
        alternative="greater",
        n_resamples=np.inf,
    ).pvalue
    assert reproduction.sign_flip_p(differences) == pytest.approx(expected, abs=1e-9)


def test_five_seeds_can_reach_significance() -> None:
    reproduction = load("reproduction")
    assert reproduction.sign_flip_p([0.1] * 5) == 1 / 32
    assert reproduction.verdict([0.1] * 5)[0] == "yes"
    assert reproduction.verdict([0.1] * 4)[0] == "same sign, p >= 0.05"  # 1/16
    assert reproduction.verdict([-0.1, 0.05, 0.0, 0.0, 0.0])[0] == "no"
    assert reproduction.verdict([0.1, -0.1, 0.0])[0] == "no difference"


# ---------------------------------------------------------------------------------------
# the paper's tables, as printed


def test_paper_tables_agree_with_each_other() -> None:
    """Table 3's and 4's repeated column are Tables 5's and 6's ResNet column, and each DoM
    is the printed means' difference (to the printed rounding). The paper prints one
    standard deviation differently in two tables (Grad-CAM on Object-CXR: 0.018 in Table
    4, 0.020 in Table 6): kept as printed."""
    paper = load("paper_tables")
    for method in paper.METHODS:
        assert paper.TABLE_3[method][2] == paper.TABLE_5[method][0]
        assert paper.TABLE_4[method][2][0] == paper.TABLE_6[method][0][0]
        if method != "Grad-CAM":
            assert paper.TABLE_4[method][2][1] == paper.TABLE_6[method][0][1]
        for table in (paper.TABLE_5, paper.TABLE_6):
            (a, _), (b, _), dom = table[method]
            assert abs(abs(a - b) - dom) <= 0.0015, method
    assert paper.TABLE_5["NormGrad Conv3x3 (M)"][2] == min(
        paper.TABLE_5[m][2] for m in paper.METHODS
    )
    assert paper.TABLE_6["NormGrad Conv1x1"][2] == min(paper.TABLE_6[m][2] for m in paper.METHODS)


# ---------------------------------------------------------------------------------------
# the report, from a results file written by hand


def write_results(path: Path, arch_scores: dict[str, dict[tuple[str, str], list[float]]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["architecture", "seed", "condition", "method", "pointing_game", "energy", "froc",
             "classifier_accuracy", "classifier_auc"]
        )  # fmt: skip
        for arch, table in arch_scores.items():
            for (condition, method), values in table.items():
                for seed, value in enumerate(values):
                    writer.writerow([arch, seed, condition, method, value, 0, 0, 0.95, 0.99])


def fake_scores(multi: float, single: float, seeds: int = 5) -> dict[tuple[str, str], list[float]]:
    """Every method at 0.5 (the randomised ones at 0.1), multi-layer NormGrad at ``multi``
    and single-layer at ``single``, the same on every seed but one, which is 0.01 higher."""
    paper = load("paper_tables")
    table: dict[tuple[str, str], list[float]] = {}
    for method in [*paper.METHODS, "centre map", "random point"]:
        value = multi if method.endswith("(M)") else single if "NormGrad" in method else 0.5
        for condition in ("trained", "semi-randomised", "fully-randomised"):
            level = value if condition == "trained" else 0.1
            values = [level] * (seeds - 1) + [level + 0.01]
            table[condition, method] = values
            if "baseline" not in method:  # smoothing lifts the gradient methods' maps
                lift = 0.2 if "NormGrad" not in method and method != "Grad-CAM" else 0.0
                table[condition, f"{method} (smoothed)"] = [v + lift for v in values]
    return table


def test_report_says_each_architectures_seeds_when_they_differ(tmp_path: Path) -> None:
    """A run stopped before its last models (a time limit) is reported with the seeds
    each architecture has, not the first one's for all; the p note reads the fewest."""
    reproduction = load("reproduction")
    path = tmp_path / "results.csv"
    scores = {"resnet50": fake_scores(0.9, 0.6), "efficientnet_b0": fake_scores(0.9, 0.6, 2)}
    write_results(path, scores)
    text = reproduction.main([str(path)])
    assert "(seeds per architecture resnet50 5, efficientnet_b0 2; mean test" in text
    assert "With 2 seeds no p can fall below 0.05" in text
    write_results(path, {a: fake_scores(0.9, 0.6) for a in scores})
    assert "(5 seeds per architecture; mean test" in reproduction.main([str(path)])


def test_report_reads_each_claim_on_each_architecture(tmp_path: Path) -> None:
    reproduction = load("reproduction")
    path = tmp_path / "results.csv"
    write_results(
        path,
        {
            "resnet18": fake_scores(multi=0.9, single=0.6),  # multi-layer holds
            "efficientnet_b0": fake_scores(multi=0.6, single=0.9),  # the opposite
        },
    )
    text = reproduction.main([str(path), "--out", str(tmp_path / "out.md")])
    assert (tmp_path / "out.md").read_text() == text
    glance = next(
        line for line in text.splitlines() if line.startswith("| Multi-layer NormGrad beats single")
    )
    # paper: LVOT 3 of 3 (multi above single), Object-CXR 0 of 3; ours: 3 of 3, 0 of 3
    assert glance == "| Multi-layer NormGrad beats single-layer NormGrad | 3 ✓ | 3 ✗ | 3 ✓ | 3 ✗ |"
    assert (
        "| Conv1x1: (M) - single | +0.132 ✓ | -0.012 ✗ | +0.300, p 0.031 ✓ | -0.300, p 1.000 ✗ |"
        in text
    )
    # identical architectures: DoM 0 for every method but NormGrad
    assert "| Grad-CAM | 0.022 | 0.226 | 0.000 (p 1.000) |" in text
    # smoothing: the paper's changes (Table 2) beside ours, smoothed minus unsmoothed
    assert "| Input x Gradient | +0.098 | +0.508 | +0.200 ± 0.000 | +0.200 ± 0.000 |" in text
    assert "| Grad-CAM | -0.028 | -0.026 | +0.000 ± 0.000 | +0.000 ± 0.000 |" in text
    # the gradient methods are compared on their smoothed maps: trained 0.7 against 0.3
    assert "| Input x Gradient: trained - FR | +0.058 ✓ | +0.478 ✓ | +0.400, p 0.031 ✓ |" in text


def test_rounding_residue_is_no_difference() -> None:
    """Hit rates of 200 images whose differences cancel leave a residue of about 1e-17 in
    the mean: read as no difference, not as a sign."""
    reproduction = load("reproduction")
    a = [k / 200 for k in (185, 176, 184, 162, 195)]
    b = [k / 200 for k in (184, 177, 192, 154, 195)]  # the same total of hits
    differences = [u - v for u, v in zip(a, b)]
    assert sum(differences) != 0  # the residue this guards against
    assert reproduction.verdict(differences)[0] == "no difference"


def test_results_written_by_the_protocol_read_back(tmp_path: Path) -> None:
    """protocol's results.csv and curves.csv, read by reproduction: the same numbers."""
    protocol = load("protocol")
    reproduction = load("reproduction")
    config = protocol.Config(size=96)
    runs = []
    for seed in (0, 1):
        run = protocol.Run("resnet18", seed, 0.9 + seed / 100, 0.95, images=4, positives=2)
        for condition in protocol.CONDITIONS:
            run.scores[condition] = {"Grad-CAM": 0.25 * seed, "Grad-CAM (smoothed)": 0.5}
            run.distances[condition] = {"Grad-CAM (smoothed)": [0.0, 3.0 + seed]}
        runs.append(run)
    protocol.write_csv(runs, tmp_path / "results.csv")
    protocol.write_curves_csv(runs, config, tmp_path / "curves.csv")
    scores, accuracy = reproduction.read(tmp_path / "results.csv")
    assert accuracy == {"resnet18": [0.9, 0.91]}
    assert scores["resnet18"]["fully-randomised"]["Grad-CAM"] == [0.0, 0.25]
    curves = reproduction.read_curves(tmp_path / "curves.csv")
    trained = curves["resnet18"]["trained"]["Grad-CAM (smoothed)"]
    # tolerances 2.4, 4.8, 9.6, 19.2 px: one image at 0 px, the other at 3 or 4 px
    trained.pop("area")
    assert [trained[k] for k in sorted(trained, key=float)] == [
        [0.5, 0.5],
        [1.0, 1.0],
        [1.0, 1.0],
        [1.0, 1.0],
    ]


# ---------------------------------------------------------------------------------------
# the modes


def test_modes() -> None:
    protocol = load("protocol")
    full = protocol.parse([])
    assert full.archs == ("resnet18", "efficientnet_b0", "small_vit", "small_swin")
    assert protocol.parse(["--archs", "small_vit", "small_swin"]).archs == (
        "small_vit",
        "small_swin",
    )
    assert len(full.seeds) >= 5 and full.device == "cpu"
    quick = protocol.parse(["--quick"])
    assert quick.archs == ("resnet18", "efficientnet_b0") and len(quick.seeds) == 2
    paper = protocol.parse(["--paper", "--device", "cpu"])
    assert (paper.size, paper.archs, paper.device) == (320, ("resnet50", "efficientnet_b0"), "cpu")
    assert [protocol.architecture(a).layers for a in paper.archs] == [
        presets.layers("resnet50"),
        presets.layers("efficientnet_b0"),
    ]
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            protocol.parse(["--paper"])  # cuda by default: refused, before any work


def test_report_reads_the_claims_at_every_tolerance(tmp_path: Path) -> None:
    """Multi-layer above single-layer at the wide tolerance only: the table says so."""
    reproduction = load("reproduction")
    write_results(tmp_path / "results.csv", {"resnet18": fake_scores(multi=0.5, single=0.5)})
    paper = load("paper_tables")
    with (tmp_path / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["architecture", "seed", "condition", "method", "tolerance", "hit_rate"])
        for method in paper.METHODS:
            multi = method.endswith("(M)")
            for tolerance, value in (("2.4000", 0.5), ("9.6000", 0.9 if multi else 0.5)):
                for seed in range(5):
                    row = ["resnet18", seed, "trained", f"{method} (smoothed)", tolerance]
                    writer.writerow([*row, value + 0.001 * seed])
    text = reproduction.main([str(tmp_path / "results.csv")])
    section = text[text.index("### The same claims at every tolerance") :]
    table = section[section.index("**Multi-layer NormGrad beats single-layer NormGrad**") :]
    assert "| 2.4 px | 3 = |" in table and "| 9.6 px | 3 ✓ |" in table
    assert "semi-randomised" not in section  # claims about randomised models are not read here


def test_report_reads_consistency_at_every_tolerance(tmp_path: Path) -> None:
    """Multi-layer maps that differ between architectures at the narrow tolerance only:
    their DoM there is the difference of means, and at the wide one the smallest."""
    reproduction = load("reproduction")
    paper = load("paper_tables")
    archs = {"a": fake_scores(0.5, 0.5), "b": fake_scores(0.5, 0.5)}
    write_results(tmp_path / "results.csv", archs)
    with (tmp_path / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["architecture", "seed", "condition", "method", "tolerance", "hit_rate"])
        for arch in archs:
            for k, method in enumerate(paper.METHODS):
                multi = method.endswith("(M)")
                narrow = (0.9 if arch == "a" else 0.4) if multi else 0.1 * k
                wide = 0.8 if multi else 0.1 * k + (0.05 if arch == "a" else 0.0)
                for tolerance, value in (("2.4000", narrow), ("9.6000", wide)):
                    for seed in range(5):
                        row = [arch, seed, "trained", f"{method} (smoothed)", tolerance, value]
                        writer.writerow(row)
    text = reproduction.main([str(tmp_path / "results.csv")])
    narrow = next(
        line
        for line in text.splitlines()
        if line.startswith("| 2.4 px | ") and line.count("|") == 6  # the DoM table's row
    )
    smallest = narrow.split("|")[2]
    assert "NormGrad Scaling (0.000)" in smallest and "(M)" not in smallest
    assert narrow.endswith("| 0.500 | 0.500 | 0.500 |")
    assert (
        "| 9.6 px | NormGrad Scaling (M) (0.000) and NormGrad Conv1x1 (M) (0.000) and "
        "NormGrad Conv3x3 (M) (0.000) | 0.000 | 0.000 | 0.000 |"
    ) in text
