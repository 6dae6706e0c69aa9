"""The paper's protocol, end to end, on synthetic chest radiographs (or real Object-CXR).

Trains two architectures from random weights on the CPU, several seeds each, then measures
with normgrad's public API only:

- the classifiers' accuracy and AUC;
- the Pointing Game of every NormGrad variant (scaling / conv1x1 / conv3x3, single and
  multi-layer) and every baseline (Input x Gradient, Guided Backprop, Grad-CAM, Guided
  Grad-CAM), unsmoothed and smoothed (the paper's Table 2), beside the centre and
  random-point baselines;
- the same for semi- and fully-randomised copies of each model (Tables 3-4);
- mean +- std over seeds and the Difference of Means between the architectures (Tables 5-6).

It prints the tables, writes them as Markdown and CSV, and saves figures like the paper's.

    python examples/protocol.py --quick            # about 3 to 4 minutes on 2 CPU cores
    python examples/protocol.py                    # the full run: about 20 minutes
    python examples/protocol.py --small-central    # small central objects, LVOT-like
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import normgrad
from normgrad import metrics, presets, sanity

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_cxr import SyntheticCXR

BASELINE_METHODS = ("Input x Gradient", "Guided Backprop", "Grad-CAM", "Guided Grad-CAM")
CONDITIONS = ("trained", "semi-randomised", "fully-randomised")


@dataclass
class Config:
    size: int = 128
    train: int = 640
    test: int = 160
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    seeds: Sequence[int] = (0, 1, 2)
    archs: Sequence[str] = ("resnet18", "efficientnet_b0")
    small_central: bool = False
    texture: bool = True  # lung and bone texture, quantum noise (False: the smooth images)
    tolerance: float | None = None  # default: 15 px at 600 px, scaled to the image size
    out: Path = Path("outputs/protocol")
    figures: int = 3
    progress: bool = True

    @property
    def pointing_tolerance(self) -> float:
        return self.tolerance if self.tolerance is not None else max(1.0, 15 * self.size / 600)

    @property
    def curve_tolerances(self) -> tuple[float, ...]:
        """The tolerances of the curves' table: the paper's, scaled, and 2, 4 and 8 times it;
        the curves' area is taken up to the largest."""
        return tuple(k * self.pointing_tolerance for k in (1, 2, 4, 8))


# quick: two seeds of each architecture, 200 positive test images, within 5 minutes on 2
# cores (the full mode has more seeds and epochs)
QUICK = {
    "size": 96,
    "train": 1100,
    "test": 400,
    "epochs": 3,
    "lr": 2e-3,
    "seeds": (0, 1),
    "figures": 1,
}


@dataclass
class Run:
    """The measurements of one trained model."""

    arch: str
    seed: int
    accuracy: float
    auc: float
    images: int  # test images the classifier was scored on
    positives: int  # of which carry objects: the Pointing Game's images
    elapsed: float = 0.0  # seconds since the study started, when this run ended
    scores: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # condition -> method -> accuracy
    energy: dict[str, float] = field(default_factory=dict)  # method -> energy (trained)
    froc: dict[str, float] = field(default_factory=dict)  # method -> FROC (trained)
    distances: dict[str, dict[str, list[float]]] = field(
        default_factory=dict
    )  # condition -> method -> each image's distance from the map's point to its objects
    cells: dict[str, float] = field(default_factory=dict)  # method -> its finest layer's cell (px)
    # the random-point baseline: hit rate at the curve's tolerances, area, chance of a region pixel
    random_point: tuple[list[float], float, float] = ([], float("nan"), float("nan"))


def log(message: str, config: Config) -> None:
    if config.progress:
        print(message, flush=True)


# ---------------------------------------------------------------------------------------
# data and training (example code: the library itself holds no data set or training loop)


def materialise(
    dataset: Dataset[Any], config: Config
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Generate (or load) every item once: images, labels, boxes."""
    loader = DataLoader(dataset, batch_size=64, collate_fn=metrics.collate)
    images, labels, boxes = [], [], []
    for x, y, b in loader:
        images.append(x)
        labels.append(y)
        boxes += b
    return torch.cat(images), torch.cat(labels), boxes


def build_model(arch: str, seed: int) -> nn.Module:
    """A classifier with random weights, ready for a short training.

    The last layer starts small (normal, std 0.01; bias 0): torchvision draws EfficientNet's
    from U(-1/sqrt(classes), 1/sqrt(classes)), which for two classes gives logits of about
    +-15 at the start, and its training then spends epochs undoing them. EfficientNet is
    built without dropout and stochastic depth, which slow a short training down. Neither
    change touches the network that is explained: the same layers, and in eval mode dropout
    and stochastic depth are the identity.
    """
    torch.manual_seed(seed)
    options = (
        {"dropout": 0.0, "stochastic_depth_prob": 0.0} if arch.startswith("efficientnet") else {}
    )
    model: nn.Module = getattr(torchvision.models, arch)(num_classes=2, **options)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return model


def train(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: Config, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    # channels-last convolutions are faster on the CPU (EfficientNet's depthwise ones most)
    model.to(memory_format=torch.channels_last)
    loader = DataLoader(
        TensorDataset(images.contiguous(memory_format=torch.channels_last), labels),
        batch_size=config.batch_size,
        shuffle=True,
        generator=gen,
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    steps = config.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr * 3, total_steps=steps
    )
    model.train()
    for epoch in range(config.epochs):
        total, correct, loss_sum = 0, 0, 0.0
        for x, y in loader:
            if torch.rand((), generator=gen) < 0.5:
                x = x.flip(-1)  # a left-right flip keeps the objects in the lungs
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += len(y)
            correct += int((out.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
        log(
            f"    epoch {epoch + 1}/{config.epochs}: loss {loss_sum / total:.3f}, train accuracy {correct / total:.3f}",
            config,
        )
    recalibrate_batch_norm(model, images, config.batch_size)
    model.to(memory_format=torch.contiguous_format)
    model.eval()


def recalibrate_batch_norm(
    model: nn.Module, images: torch.Tensor, batch_size: int, limit: int = 512
) -> None:
    """Recompute BatchNorm statistics as exact averages over (at most ``limit`` of) the
    training images.

    After a short training run the running averages lag behind the weights, and the model
    in eval mode can predict one class for everything; one pass without gradients fixes it.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for chunk in images[:limit].split(batch_size):
            model(chunk)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def classify(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy and ROC AUC (probability that a positive outscores a negative)."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in images.split(64)])
    scores = logits.softmax(1)[:, 1]
    accuracy = float((logits.argmax(1) == labels).float().mean())
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return accuracy, float("nan")
    greater = (pos[:, None] > neg[None, :]).float().mean()
    equal = (pos[:, None] == neg[None, :]).float().mean()
    return accuracy, float(greater + 0.5 * equal)


# ---------------------------------------------------------------------------------------
# the protocol, with normgrad's public API


def explainers_for(model: nn.Module, arch: str) -> dict[str, normgrad.Explainer]:
    preset = presets.layers(arch)
    out: dict[str, normgrad.Explainer] = {}
    for vil, label in (("scaling", "Scaling"), ("conv1x1", "Conv1x1"), ("conv3x3", "Conv3x3")):
        out[f"NormGrad {label}"] = normgrad.NormGrad(model, preset.single, vil)
        out[f"NormGrad {label} (M)"] = normgrad.NormGrad(model, preset.multi, vil)
    out["Input x Gradient"] = normgrad.InputXGradient(model)
    out["Guided Backprop"] = normgrad.GuidedBackprop(model)
    out["Grad-CAM"] = normgrad.GradCAM(model, preset.single)
    out["Guided Grad-CAM"] = normgrad.GuidedGradCAM(model, preset.single)
    return out


def batches(
    images: torch.Tensor, boxes: list[torch.Tensor], size: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """(images, labels, boxes) batches of the positive images; the class explained is 1."""
    return [
        (
            images[i : i + size],
            torch.ones(len(images[i : i + size]), dtype=torch.long),
            boxes[i : i + size],
        )
        for i in range(0, len(images), size)
    ]


@contextlib.contextmanager
def quiet_guided_backprop() -> Iterator[None]:
    """Warnings the tables already account for, silenced: Guided Backprop on EfficientNet
    (SiLU, no ReLU) is the plain gradient; and at 96 px a last block's map is 3x3, often
    constant (Grad-CAM negative everywhere), so its saliency map is all zero and the
    Pointing Game counts a miss (normgrad warns once per call and layer)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="GuidedBackprop: no ReLU ran")
        warnings.filterwarnings("ignore", message="layer .* gives a constant map")
        yield


def measure(
    model: nn.Module, arch: str, data: list[Any], config: Config, condition: str
) -> normgrad.EvaluationResult:
    """One evaluation: the Pointing Game, and for the trained model also the energy-based
    Pointing Game and the FROC of each map's peaks (from the same maps)."""
    trained = condition == "trained"
    with quiet_guided_backprop():
        result = normgrad.evaluate(
            model,
            explainers_for(model, arch),
            data,
            tolerance=config.pointing_tolerance,
            smoothing_sigma=1.0 if trained else None,
            baselines=True,
            progress=False,
            metrics=("energy", "froc") if trained else (),
        )
    return result


def finest_cells(model: nn.Module, arch: str, image: torch.Tensor) -> dict[str, float]:
    """The side, in pixels, of a cell of the finest layer each layer-based method reads."""
    cells = {}
    for name, explainer in explainers_for(model, arch).items():
        with quiet_guided_backprop():
            raw = explainer.explain(image[None], 1).raw_layer_maps
        if raw:
            cells[name] = image.shape[-1] / max(m.shape[-1] for m in raw.values())
    return cells


def add_title(fig: Any, text: str, fontsize: float = 9, margin: float = 0.05) -> None:
    """Put a title above a laid-out figure without covering the panels' titles.

    The figure grows by the title's height, the title hangs ``margin`` inches below the top
    edge (a fixed distance, not a fraction of the height, so it holds for any number of
    rows), and tight_layout, which measures the title, lays the panels out again below it.
    """
    height = fig.get_figheight()
    fig.set_figheight(height + (fontsize * 1.5 / 72 + margin))
    fig.suptitle(text, fontsize=fontsize, y=1 - margin / fig.get_figheight(), va="top")
    fig.tight_layout()


# the panels of an example: the NormGrad variants in one figure, the baselines in another,
# four panels per row, so that the panels' titles stay legible at the page's width
FIGURE_GROUPS = {
    "normgrad": lambda name: name.startswith("NormGrad"),
    "baselines": lambda name: not name.startswith("NormGrad"),
}
# the curves drawn (every method is in the tables)
CURVE_METHODS = (
    "NormGrad Conv1x1 (M)",
    "NormGrad Conv3x3 (M)",
    "NormGrad Conv3x3",
    "Input x Gradient",
    "Guided Backprop",
    "Grad-CAM",
    "Guided Grad-CAM",
    "centre baseline",
)


def legible(fig: Any, fontsize: float = 10) -> None:
    """Every panel title at ``fontsize`` points (the figures are saved at their page size)."""
    for ax in fig.axes:
        ax.title.set_fontsize(fontsize)


def save_figures(
    model: nn.Module,
    arch: str,
    seed: int,
    images: torch.Tensor,
    boxes: list[torch.Tensor],
    config: Config,
) -> list[Path]:
    import matplotlib

    from normgrad import viz

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    explainers = explainers_for(model, arch)
    paths = []
    figures = config.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for k in range(min(config.figures, len(images))):
        x = images[k : k + 1]
        with quiet_guided_backprop():
            maps = {name: e(x, 1)[0] for name, e in explainers.items()}
        for group, member in FIGURE_GROUPS.items():
            chosen = {n: m for n, m in maps.items() if member(n)}
            fig = viz.compare(x[0], chosen, boxes[k], columns=4, size=1.7)
            legible(fig)
            add_title(
                fig,
                f"{arch}, seed {seed}: + marks each map's maximum, green boxes the objects",
                fontsize=10,
            )
            path = figures / f"{arch}_seed{seed}_example{k}_{group}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            paths.append(path)
    return paths


def save_curves(runs: list[Run], config: Config) -> list[Path]:
    """The Pointing Game's curves of each architecture, trained and fully randomised: the
    hit rate over every seed's images at each tolerance, from the recorded distances."""
    import matplotlib

    from normgrad import viz

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = config.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    top = config.curve_tolerances[-1]
    tolerances = [top * k / 96 for k in range(97)]
    paths = []
    for arch in dict.fromkeys(r.arch for r in runs):
        mine = [r for r in runs if r.arch == arch]
        for condition in ("trained", "fully-randomised"):
            curves = {
                n: metrics.pointing_game_curve(
                    [d for r in mine for d in r.distances[condition][n]],
                    tolerances=tolerances,
                    max_tolerance=top,
                )
                for n in CURVE_METHODS
            }
            cells = {n: c for n, c in mine[0].cells.items() if n in curves and "(M)" in n}
            fig, ax = plt.subplots(figsize=(6.8, 4.2))
            viz.pointing_game_curves(
                curves,
                tolerance=config.pointing_tolerance,
                cells=cells,
                intervals=False,
                ax=ax,
                title=f"{arch}, {condition} ({len(mine)} seeds, {mine[0].positives} images each)",
            )
            path = figures / f"curves_{arch}_{condition}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            paths.append(path)
    return paths


def random_point_curve(
    boxes: list[torch.Tensor], size: int, config: Config
) -> tuple[list[float], float, float]:
    """The random-point baseline's hit rate at each of the curve's tolerances (exact), its
    normalised area up to the largest (midpoint rule over 64 tolerances), and its chance of
    landing on an object's pixel (tolerance 0: the energy of a one-pixel map there)."""
    shape = (size, size)

    def rate(t: float) -> float:
        return float(metrics.random_point_hit_rate(boxes, shape, t).nanmean())

    top = config.curve_tolerances[-1]
    area = sum(rate((k + 0.5) * top / 64) for k in range(64)) / 64
    return [rate(t) for t in config.curve_tolerances], area, rate(0.0)


def run_protocol(train_set: Dataset[Any], test_set: Dataset[Any], config: Config) -> list[Run]:
    """Train every architecture and seed, and measure everything."""
    start = time.perf_counter()
    log(
        f"preparing data: {len(train_set)} training and {len(test_set)} test images of {config.size}x{config.size}",
        config,
    )
    train_x, train_y, _ = materialise(train_set, config)
    test_x, test_y, test_boxes = materialise(test_set, config)
    positive = [i for i in range(len(test_y)) if len(test_boxes[i]) > 0]
    pos_x, pos_boxes = test_x[positive], [test_boxes[i] for i in positive]
    data = batches(pos_x, pos_boxes)
    random_point = random_point_curve(pos_boxes, config.size, config)
    runs = []
    for arch in config.archs:
        for seed in config.seeds:
            log(f"[{time.perf_counter() - start:6.1f} s] {arch}, seed {seed}: training", config)
            model = build_model(arch, seed)
            train(model, train_x, train_y, config, seed)
            accuracy, auc = classify(model, test_x, test_y)
            log(
                f"[{time.perf_counter() - start:6.1f} s] test accuracy {accuracy:.3f}, AUC {auc:.3f}; "
                f"measuring on {len(pos_x)} images",
                config,
            )
            run = Run(arch, seed, accuracy, auc, images=len(test_y), positives=len(pos_x))
            run.random_point = random_point
            result = measure(model, arch, data, config, "trained")
            run.scores["trained"] = {row.method: row.accuracy for row in result.rows}
            run.energy = {row.method: row.energy for row in result.rows}
            run.froc = {row.method: row.froc for row in result.rows}
            run.distances["trained"] = result.distances()
            run.cells = finest_cells(model, arch, pos_x[0])
            for condition, how in (("semi-randomised", "semi"), ("fully-randomised", "full")):
                randomised = sanity.randomize(model, how, seed=seed)
                result = measure(randomised, arch, data, config, how)
                run.scores[condition] = {row.method: row.accuracy for row in result.rows}
                run.distances[condition] = result.distances()
            if seed == config.seeds[0] and config.figures:
                save_figures(model, arch, seed, pos_x, pos_boxes, config)
            run.elapsed = time.perf_counter() - start
            runs.append(run)
    log(f"[{time.perf_counter() - start:6.1f} s] done", config)
    return runs


# ---------------------------------------------------------------------------------------
# tables


def methods(runs: list[Run]) -> list[str]:
    names = list(runs[0].scores["trained"])
    return [n for n in names if not n.endswith("(smoothed)") and "baseline" not in n]


def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def fmt(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.3f} ± {s:.3f}"


def tables(runs: list[Run], config: Config) -> str:
    archs = list(dict.fromkeys(r.arch for r in runs))
    by_arch = {a: [r for r in runs if r.arch == a] for a in archs}
    names = methods(runs)
    images, positives = runs[0].images, runs[0].positives
    kind = "textured" if config.texture else "smooth (earlier generator)"
    lines = [
        f"Synthetic chest radiographs ({kind}"
        f"{', small central objects' if config.small_central else ''}), "
        f"{config.size}x{config.size}; {config.train} training images, {config.epochs} epochs; "
        f"tested on {images} images, of which {positives} carry objects (the Pointing Game's "
        f"images); {len(config.seeds)} seeds per architecture {list(config.seeds)}; Pointing Game "
        f"tolerance {config.pointing_tolerance:.1f} px (15 px at 600 px, scaled). Mean ± std "
        f"over seeds. This run took {runs[-1].elapsed:.0f} s on {torch.get_num_threads()} "
        f"threads, data generation, training and every measurement included.",
        "",
        "### Classifiers",
        "",
        "| architecture | accuracy | AUC |",
        "| --- | --- | --- |",
    ]
    for a in archs:
        lines.append(
            f"| {a} | {fmt([r.accuracy for r in by_arch[a]])} | {fmt([r.auc for r in by_arch[a]])} |"
        )
    # Table 2: smoothing
    lines += ["", "### Pointing Game, unsmoothed and smoothed (Table 2)", ""]
    header = "| method | " + " | ".join(f"{a} | {a} smoothed" for a in archs) + " |"
    lines += [header, "| --- |" + " --- | --- |" * len(archs)]
    for n in names:
        cells = []
        for a in archs:
            cells.append(fmt([r.scores["trained"][n] for r in by_arch[a]]))
            cells.append(fmt([r.scores["trained"][f"{n} (smoothed)"] for r in by_arch[a]]))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    for base in ("centre baseline", "random baseline"):
        cells = []
        for a in archs:
            value = fmt([r.scores["trained"][base] for r in by_arch[a]])
            cells += [value, value]
        lines.append(f"| *{base}* | " + " | ".join(cells) + " |")
    lines += curve_tables(runs, config, names)
    # beyond the Pointing Game: mass on the objects, and every object found
    lines += [
        "",
        "### Energy-based Pointing Game and FROC of the maps' peaks (trained models)",
        "",
        "Energy: the fraction of a map's mass on the objects. FROC: Object-CXR's score of "
        "each map's 10 best peaks as detections (mean sensitivity at 1/8 to 8 false "
        "positives per image), over the positive test images. The random baseline's "
        "energy is the chance that a uniformly random pixel lies on an object; it has no "
        "peaks, so no FROC.",
        "",
    ]
    lines += ["| method | " + " | ".join(f"{a} energy | {a} FROC" for a in archs) + " |"]
    lines += ["| --- |" + " --- | --- |" * len(archs)]
    for n in [*names, "centre baseline"]:
        cells = []
        for a in archs:
            cells.append(fmt([r.energy[n] for r in by_arch[a]]))
            cells.append(fmt([r.froc[n] for r in by_arch[a]]))
        label = f"*{n}*" if "baseline" in n else n
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # a uniformly random point: its energy is its chance of an object's pixel; no peaks
    on_region = f"{runs[0].random_point[2]:.3f}"
    lines.append("| *random baseline* |" + f" {on_region} | — |" * len(archs))
    # Tables 3-4: randomisation, one table per architecture (to fit the page)
    lines += ["", "### Trained versus semi- (SR) and fully-randomised (FR) models (Tables 3-4)"]
    for a in archs:
        lines += ["", f"**{a}**", "", "| method | trained | SR | FR |", "| --- | --- | --- | --- |"]
        for n in [*names, "centre baseline", "random baseline"]:
            cells = [fmt([r.scores[c][n] for r in by_arch[a]]) for c in CONDITIONS]
            label = f"*{n}*" if "baseline" in n else n
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # Tables 5-6: consistency across architectures
    if len(archs) == 2:
        a, b = archs
        lines += [
            "",
            f"### Consistency across architectures: DoM between {a} and {b} (Tables 5-6)",
            "",
        ]
        lines += [
            f"| method | {a} | {b} | DoM | permutation p |",
            "| --- | --- | --- | --- | --- |",
        ]
        for n in [*names, "centre baseline", "random baseline"]:
            xa = [r.scores["trained"][n] for r in by_arch[a]]
            xb = [r.scores["trained"][n] for r in by_arch[b]]
            d = metrics.dom(xa, xb)
            label = f"*{n}*" if "baseline" in n else n
            lines.append(f"| {label} | {fmt(xa)} | {fmt(xb)} | {d.dom:.3f} | {d.p_value:.2f} |")
    return "\n".join(lines) + "\n"


def curve(run: Run, condition: str, method: str, config: Config) -> metrics.PointingGameCurve:
    return metrics.pointing_game_curve(
        run.distances[condition][method],
        tolerances=config.curve_tolerances,
        max_tolerance=config.curve_tolerances[-1],
    )


def curve_tables(runs: list[Run], config: Config, names: list[str]) -> list[str]:
    """The Pointing Game at several tolerances and the area under its curve, per
    architecture; and the area for trained and randomised models."""
    archs = list(dict.fromkeys(r.arch for r in runs))
    tolerances, top = config.curve_tolerances, config.curve_tolerances[-1]
    lines = [
        "",
        "### The Pointing Game at every tolerance (trained models)",
        "",
        f"Hit rate at {len(tolerances)} tolerances (the first is the paper's, scaled), mean "
        f"over seeds; area: the normalised area under the hit rate from 0 to {top:.1f} px, "
        "mean ± std over seeds (1: every point on an object). Below each table, the side "
        "of a cell of the finest layer each method reads (a map cannot point more finely).",
    ]
    for a in archs:
        mine = [r for r in runs if r.arch == a]
        header = " | ".join(f"{t:.1f} px" for t in tolerances)
        lines += ["", f"**{a}**", "", f"| method | {header} | area |"]
        lines += ["| --- |" + " --- |" * (len(tolerances) + 1)]
        for n in [*names, "centre baseline"]:
            curves = [curve(r, "trained", n, config) for r in mine]
            rates = [
                float(torch.tensor([c.hit_rate[k] for c in curves]).mean())
                for k in range(len(tolerances))
            ]
            label = f"*{n}*" if "baseline" in n else n
            cells = " | ".join(f"{v:.3f}" for v in rates)
            lines.append(f"| {label} | {cells} | {fmt([c.auc for c in curves])} |")
        random_rates, random_area, _ = mine[0].random_point
        cells = " | ".join(f"{v:.3f}" for v in random_rates)
        lines.append(f"| *random baseline* | {cells} | {random_area:.3f} |")
        by_cell: dict[float, list[str]] = {}
        for n, side in mine[0].cells.items():
            if n in names:
                by_cell.setdefault(side, []).append(n)
        groups = [f"{side:.0f} px: {', '.join(ns)}" for side, ns in sorted(by_cell.items())]
        lines += ["", "Finest cells: " + "; ".join(groups) + "; every other method: 1 px."]
    lines += [
        "",
        f"### Area under the Pointing Game's curve (to {top:.1f} px), trained and randomised",
    ]
    for a in archs:
        mine = [r for r in runs if r.arch == a]
        lines += ["", f"**{a}**", "", "| method | trained | SR | FR |", "| --- | --- | --- | --- |"]
        for n in [*names, "centre baseline"]:
            cells = [fmt([curve(r, c, n, config).auc for r in mine]) for c in CONDITIONS]
            label = f"*{n}*" if "baseline" in n else n
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_csv(runs: list[Run], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "architecture",
                "seed",
                "condition",
                "method",
                "pointing_game",
                "energy",
                "froc",
                "classifier_accuracy",
                "classifier_auc",
            ]
        )
        for r in runs:
            for condition, scores in r.scores.items():
                for method, value in scores.items():
                    trained = condition == "trained"
                    energy = r.energy.get(method, float("nan")) if trained else float("nan")
                    froc = r.froc.get(method, float("nan")) if trained else float("nan")
                    writer.writerow(
                        [
                            r.arch,
                            r.seed,
                            condition,
                            method,
                            f"{value:.6f}",
                            f"{energy:.6f}",
                            f"{froc:.6f}",
                            f"{r.accuracy:.6f}",
                            f"{r.auc:.6f}",
                        ]
                    )


def summary(runs: list[Run], config: Config) -> str:
    """The run's main facts in sentences, every number read from the run."""
    archs = list(dict.fromkeys(r.arch for r in runs))
    names = methods(runs)
    tolerance, top = config.pointing_tolerance, config.curve_tolerances[-1]
    parts = [
        f"This run trained {len(config.seeds)} seed(s) of each architecture on "
        f"{config.train} images of {config.size}x{config.size} for {config.epochs} epochs and "
        f"tested on {runs[0].images} images ({runs[0].positives} with objects), in "
        f"{runs[-1].elapsed:.0f} s on {torch.get_num_threads()} threads."
    ]
    for a in archs:
        mine = [r for r in runs if r.arch == a]
        acc = [r.accuracy for r in mine]
        trained = {n: mean_std([r.scores["trained"][n] for r in mine])[0] for n in names}
        area = {n: mean_std([curve(r, "trained", n, config).auc for r in mine])[0] for n in names}
        best = max(trained, key=trained.__getitem__)
        best_area = max(area, key=area.__getitem__)
        normgrads = [n for n in names if n.startswith("NormGrad")]
        best_ng = max(normgrads, key=trained.__getitem__)
        multi = [n for n in names if n.startswith("NormGrad") and n.endswith("(M)")]
        cell = min(mine[0].cells[n] for n in multi) if multi else float("nan")
        parts.append(
            f"**{a}**: test accuracy {mean_std(acc)[0]:.3f} (lowest seed {min(acc):.3f}). At "
            f"the paper's tolerance ({tolerance:.1f} px) {best} points best ({trained[best]:.3f}); "
            f"the best NormGrad variant is {best_ng} ({trained[best_ng]:.3f}), and the centre "
            f"baseline scores {mean_std([r.scores['trained']['centre baseline'] for r in mine])[0]:.3f}. "
            f"Over tolerances up to {top:.1f} px, {best_area} has the largest area "
            f"({area[best_area]:.3f}"
            + (f"; {best_ng}: {area[best_ng]:.3f}" if best_ng != best_area else "")
            + "). Multi-layer NormGrad's "
            f"finest layer has cells of {cell:.0f} px, {cell / tolerance:.1f} times the tolerance."
        )
    return "\n\n".join(parts) + "\n"


def report(runs: list[Run], config: Config) -> str:
    config.out.mkdir(parents=True, exist_ok=True)
    text = tables(runs, config)
    (config.out / "tables.md").write_text(text)
    (config.out / "summary.md").write_text(summary(runs, config))
    write_csv(runs, config.out / "results.csv")
    print("\n" + text)
    if config.figures:
        save_curves(runs, config)
    print(
        f"wrote {config.out / 'tables.md'}, {config.out / 'summary.md'}, "
        f"{config.out / 'results.csv'} and {config.out / 'figures'}/"
    )
    return text


def parse(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small images and data: about 3 minutes on 2 CPU cores"
    )
    parser.add_argument(
        "--small-central", action="store_true", help="one small object near the centre (LVOT-like)"
    )
    parser.add_argument("--size", type=int)
    parser.add_argument("--train", type=int)
    parser.add_argument("--test", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--archs", nargs="+", choices=presets.available())
    parser.add_argument("--tolerance", type=float, help="Pointing Game radius in pixels")
    parser.add_argument(
        "--smooth-images",
        action="store_true",
        help="the earlier generator: no lung or bone texture, no quantum noise",
    )
    parser.add_argument(
        "--figures", type=int, help="example figures per architecture (0: none, no matplotlib)"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = Config(**(QUICK if args.quick else {}))
    for name in ("size", "train", "test", "epochs", "tolerance", "out", "figures"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    if args.seeds:
        config.seeds = tuple(args.seeds)
    if args.archs:
        config.archs = tuple(args.archs)
    config.small_central = args.small_central
    config.texture = not args.smooth_images
    config.progress = not args.quiet
    if args.small_central and args.out is None:
        config.out = Path("outputs/protocol-small-central")
    return config


def check_dependencies(config: Config) -> None:
    """Fail before any training when a result could not be written."""
    if config.figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit(
                "the figures need matplotlib, which is not installed: "
                'pip install -e ".[examples]" (or pass --figures 0 for the tables alone)'
            ) from None


def main(argv: Sequence[str] | None = None) -> list[Run]:
    config = parse(argv)
    check_dependencies(config)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    options = {"small_central": config.small_central, "texture": config.texture}
    train_set = SyntheticCXR(config.train, config.size, seed=0, **options)
    test_set = SyntheticCXR(config.test, config.size, seed=1, **options)
    runs = run_protocol(train_set, test_set, config)
    report(runs, config)
    return runs


if __name__ == "__main__":
    main()
