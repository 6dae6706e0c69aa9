"""The paper's protocol, end to end, on synthetic chest radiographs (or real Object-CXR).

Trains four architectures (two in the quick mode) from random weights on the CPU, several
seeds each, then measures with normgrad's public API only:

- the classifiers' accuracy and AUC;
- the Pointing Game of every NormGrad variant (scaling / conv1x1 / conv3x3, single and
  multi-layer) and every baseline (Input x Gradient, Guided Backprop, Grad-CAM, Guided
  Grad-CAM), unsmoothed and smoothed (the paper's Table 2), beside the centre and
  random-point rates;
- the same for semi- and fully-randomised copies of each model (Tables 3-4);
- mean +- std over seeds and the Difference of Means between the architectures (Tables 5-6).

It prints the tables, writes them as Markdown and CSV, and saves figures like the paper's.

    python examples/protocol.py --quick            # about 4 minutes on 2 CPU cores
    python examples/protocol.py                    # the full run: 4 models, 5 seeds
    python examples/protocol.py --paper            # the paper's models and size, on a GPU
    python examples/protocol.py --small-central    # small central objects, LVOT-like
    python examples/protocol.py --archs resnet18 efficientnet_b0

The full mode trains a small ViT and a small Swin beside the two CNNs (from random weights
on the same images, standardised; tokens from a convolutional stem; layers from
``presets.vit`` and ``presets.swin``); ``--archs`` chooses the architectures. ``--paper``
trains the paper's ResNet-50 and EfficientNet-B0 at 320 px and runs on ``--device cuda``
by default.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
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
import figures
from synthetic_cxr import SyntheticCXR

# the rows a method must beat (evaluate's reference rows), never smoothed
REFERENCE_ROWS = ("centre map", "random point")
BASELINE_METHODS = ("Input x Gradient", "Guided Backprop", "Grad-CAM", "Guided Grad-CAM")
CONDITIONS = ("trained", "semi-randomised", "fully-randomised")
# the localisation measures evaluate reports for the trained models, and their titles
LOCALIZATION = {"iou": "mIoU (Otsu)", "hit_rate": "hit rate", "auprc": "AUPRC"}
# methods beyond the paper's, added to the tables by name (--extra); the perturbation
# methods cost forward passes per image: Occlusion 122 at 96 px, RISE 1000
EXTRA_METHODS: dict[str, Any] = {
    "Occlusion": lambda model: normgrad.Occlusion(model, window=16, stride=8),
    "RISE": lambda model: normgrad.RISE(model, n_masks=1000, cell_size=16),
}
# the class activation maps beyond Grad-CAM, on the preset's single layer
# (presets.cam_methods), also by name; Score-CAM costs a forward pass per channel there
CAM_METHODS = ("Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "Eigen-CAM", "Score-CAM")


@dataclass
class Config:
    size: int = 96
    train: int = 1600
    test: int = 400
    epochs: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    archs: Sequence[str] = ("resnet18", "efficientnet_b0", "small_vit", "small_swin")
    device: str = "cpu"
    small_central: bool = False
    texture: bool = True  # lung and bone texture, quantum noise (False: the smooth images)
    tolerance: float | None = None  # default: 15 px at 600 px, scaled to the image size
    out: Path = Path("outputs/protocol")
    figures: int = 1
    progress: bool = True
    extra: Sequence[str] = ()  # names of EXTRA_METHODS evaluated beside the paper's

    @property
    def pointing_tolerance(self) -> float:
        return self.tolerance if self.tolerance is not None else max(1.0, 15 * self.size / 600)

    @property
    def curve_tolerances(self) -> tuple[float, ...]:
        """The tolerances of the curves' table: the paper's, scaled, and 2, 4 and 8 times it;
        the curves' area is taken up to the largest."""
        return tuple(k * self.pointing_tolerance for k in (1, 2, 4, 8))


# quick: the two CNNs, two seeds each, 200 positive test images, within 5 minutes on 2
# cores; the full mode (the defaults above) has five seeds, more images and epochs, and
# the two transformers
QUICK: dict[str, Any] = {
    "train": 1100,
    "epochs": 3,
    "seeds": (0, 1),
    "archs": ("resnet18", "efficientnet_b0"),
}
# the paper's architectures and layers at 320 px, for one GPU (the images are generated on
# the CPU, in worker processes: at this size they take about as long as the training)
PAPER: dict[str, Any] = {
    "size": 320,
    "train": 2000,
    "test": 400,
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "archs": ("resnet50", "efficientnet_b0"),
    "device": "cuda",
    "out": Path("outputs/protocol-paper"),
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
    # "iou", "hit_rate", "auprc" -> method -> value (trained; the regions as masks)
    localization: dict[str, dict[str, float]] = field(default_factory=dict)
    distances: dict[str, dict[str, list[float]]] = field(
        default_factory=dict
    )  # condition -> method -> each image's distance from the map's point to its objects
    cells: dict[str, float] = field(default_factory=dict)  # method -> its finest layer's cell (px)
    training: tuple[int, float] = (0, 0.0)  # its epochs and learning rate
    # the random point: hit rate at the curve's tolerances, area, chance of a region pixel
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
    # generated in worker processes where the training runs on a GPU and cores are many
    workers = min(8, os.cpu_count() or 1) if config.device != "cpu" else 0
    loader = DataLoader(dataset, batch_size=64, collate_fn=metrics.collate, num_workers=workers)
    images, labels, boxes = [], [], []
    for x, y, b in loader:
        images.append(x)
        labels.append(y)
        boxes += b
    return torch.cat(images), torch.cat(labels), boxes


@dataclass(frozen=True)
class Architecture:
    """One architecture the protocol trains: how to build it, train it and read it."""

    build: Callable[[int], nn.Module]
    """Image size -> a two-class classifier with random weights (the caller seeds)."""
    layers: presets.LayerPreset
    """The single and multi-layer sets its explainers read."""
    lr: float | None = None
    """Its learning rate (None: the run's)."""
    epochs: int = 1
    """Its epochs, as a multiple of the run's."""
    standardise: bool = False
    """Inputs standardised with the training images' mean and std (transformers need it;
    BatchNorm makes the CNNs do without)."""


def _torchvision(arch: str) -> Callable[[int], nn.Module]:
    # EfficientNet without dropout and stochastic depth, which slow a short training down;
    # in eval mode both are the identity, so the network explained is the same
    options = (
        {"dropout": 0.0, "stochastic_depth_prob": 0.0} if arch.startswith("efficientnet") else {}
    )
    return lambda size: getattr(torchvision.models, arch)(num_classes=2, **options)


def conv_stem(width: int, strides: Sequence[int], channels: int = 32) -> nn.Sequential:
    """The tokeniser of the "early convolutions" ViT (Xiao et al. 2021, "Early Convolutions
    Help Transformers See Better"): 3x3 convolutions of the given strides, each with
    BatchNorm and ReLU, channels doubling from ``channels``, then a 1x1 convolution to the
    transformer's ``width``; it replaces the patchify convolution, one token per
    ``prod(strides)`` pixels.

    Why: with the patchify convolution neither transformer left chance on these images
    within the full mode's time (test accuracy 0.54 to 0.60 with seed 0, the ViT trained
    for 8 and 12 epochs, the Swin for 24); with this stem both learn in 4 epochs. The
    overlapping 3x3 convolutions see a small object's edges at full resolution before any
    token is formed, where a 12 px patch has to learn it from 1,600 images through one
    linear map."""
    layers: list[nn.Module] = []
    inputs = 3
    for k, stride in enumerate(strides):
        outputs = channels * 2**k
        layers += [
            nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        ]
        inputs = outputs
    layers.append(nn.Conv2d(inputs, width, 1))
    return nn.Sequential(*layers)


# the transformers' tokens: 8x8 pixels (three stride-2 convolutions), 12x12 tokens at 96 px:
# tokens of 4 px doubled the Swin's time per epoch against 6 px ones, without learning faster
TOKEN = 8


def small_vit(size: int) -> nn.Module:
    """A ViT of 4 blocks, width 64, 4 heads, MLP 128, on tokens from a convolutional stem
    (``conv_proj``, see ``conv_stem``): one token per 8x8 pixels (12x12 tokens at 96 px)."""
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        image_size=size,
        patch_size=TOKEN,
        num_layers=4,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=2,
    )
    # the stem stands where the patchify convolution stood: the blocks keep their names
    model.conv_proj = conv_stem(64, [2, 2, 2])
    return model


# two stages of two blocks: the three stages (1, 1, 2) of the patchify recipe, with this
# stem, stayed between 0.50 and 0.82 test accuracy in 4 to 6 epochs with seed 0 (widths 32
# and 64, tokens of 4, 6 and 8 px, lr 3e-4 to 1e-3); two blocks per stage learned
SWIN_DEPTHS = [2, 2]
SWIN_WINDOW = 6


def small_swin(size: int) -> nn.Module:
    """A Swin of 2 stages (depths 2, 2), embedding 64, heads 2 and 4, windows of 6x6 tokens,
    MLP ratio 2, on tokens from a convolutional stem (``features.0.0``, see ``conv_stem``):
    one token per 8x8 pixels, so its stages see 12x12 and 6x6 tokens at 96 px, every
    window whole (the second stage's one window is global attention).

    The stem ends with BatchNorm in place of the patch embedding's LayerNorm
    (``features.0.2``, now the identity): a LayerNorm per token rescales the tokens
    where an object lies to the norm of the others; with it, at the same lr and epochs,
    two seeds of five ended at 0.66 and 0.68 test accuracy, with the BatchNorm all five
    learned."""
    from torchvision.models.swin_transformer import SwinTransformer

    model = SwinTransformer(
        patch_size=[TOKEN, TOKEN],
        embed_dim=64,
        depths=SWIN_DEPTHS,
        num_heads=[2, 4],
        window_size=[SWIN_WINDOW, SWIN_WINDOW],
        mlp_ratio=2.0,
        stochastic_depth_prob=0.0,
        num_classes=2,
    )
    embedding = model.features[0]
    embedding[0] = nn.Sequential(*conv_stem(64, [2, 2, 2]), nn.BatchNorm2d(64))
    embedding[2] = nn.Identity()
    return model


# the transformers, by name; every torchvision architecture with a layer preset also works.
# Both train for the run's epochs (4 in the full mode, as the CNNs) with the protocol's
# loop (AdamW, weight decay 1e-4, one-cycle schedule to 3 times the lr, which warms up
# over its first 30%, batch 32, left-right flips), chosen on test accuracy and time only:
# the ViT at lr 5e-4 (at 1e-3 one seed of five stayed at chance and another reached
# 0.87), the Swin at lr 5e-4 (at 3e-4 one seed of five reached only 0.83).
TRANSFORMERS: dict[str, Architecture] = {
    "small_vit": Architecture(small_vit, presets.vit(4), lr=5e-4, standardise=True),
    "small_swin": Architecture(small_swin, presets.swin(SWIN_DEPTHS), lr=5e-4, standardise=True),
}


def architecture(name: str) -> Architecture:
    """The architecture called ``name``: a transformer above or a torchvision preset."""
    if name in TRANSFORMERS:
        return TRANSFORMERS[name]
    return Architecture(_torchvision(name), presets.layers(name))


def build_model(arch: str, seed: int, size: int = 96) -> nn.Module:
    """A classifier with random weights, ready for a short training.

    The last layer starts small (normal, std 0.01; bias 0): torchvision draws EfficientNet's
    from U(-1/sqrt(classes), 1/sqrt(classes)), which for two classes gives logits of about
    +-15 at the start, and its training then spends epochs undoing them (and starts a ViT's
    at zero). This changes only the starting point, not the network that is explained.
    """
    torch.manual_seed(seed)
    model = architecture(arch).build(size)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return model


def train(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: Config, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(config.device)
    # channels-last convolutions are faster on the CPU (EfficientNet's depthwise ones most)
    # and on a GPU's tensor cores
    model.to(device, memory_format=torch.channels_last)
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
        total, correct, loss_sum = 0, torch.zeros((), device=device), torch.zeros((), device=device)
        for x, y in loader:
            if torch.rand((), generator=gen) < 0.5:
                x = x.flip(-1)  # a left-right flip keeps the objects in the lungs
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += len(y)
            correct += (out.argmax(1) == y).sum()  # summed on the device, read once an epoch
            loss_sum += loss.detach() * len(y)
        log(
            f"    epoch {epoch + 1}/{config.epochs}: loss {float(loss_sum) / total:.3f}, "
            f"train accuracy {int(correct) / total:.3f}",
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
    device = next(model.parameters()).device
    with torch.no_grad():
        for chunk in images[:limit].split(batch_size):
            model(chunk.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def classify(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy and ROC AUC (probability that a positive outscores a negative)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = torch.cat([model(chunk.to(device)).cpu() for chunk in images.split(64)])
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


def explainers_for(
    model: nn.Module, arch: str, extra: Sequence[str] = ()
) -> dict[str, normgrad.Explainer]:
    preset = architecture(arch).layers
    methods = normgrad.presets.paper_methods(model, preset)
    cams = normgrad.presets.cam_methods(model, preset) if set(extra) & set(CAM_METHODS) else {}
    return methods | {n: cams[n] if n in cams else EXTRA_METHODS[n](model) for n in extra}


def batches(
    images: torch.Tensor, boxes: list[torch.Tensor], size: int = 16, device: str = "cpu"
) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """(images, labels, boxes) batches of the positive images on ``device``; the class
    explained is 1."""
    return [
        (
            images[i : i + size].to(device),
            torch.ones(len(images[i : i + size]), dtype=torch.long, device=device),
            [b.to(device) for b in boxes[i : i + size]],
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
    """One evaluation: the Pointing Game of every map, unsmoothed and smoothed, and for the
    trained model also the energy-based Pointing Game and the FROC of each map's peaks
    (from the same maps)."""
    trained = condition == "trained"
    with quiet_guided_backprop():
        result = normgrad.evaluate(
            model,
            explainers_for(model, arch, config.extra),
            data,
            tolerance=config.pointing_tolerance,
            smoothing_sigma=1.0,
            reference_rows=True,
            progress=False,
            metrics=("energy", "froc", *LOCALIZATION) if trained else (),
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
    "centre map",
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
    folder = config.out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(min(config.figures, len(images))):
        x = images[k : k + 1].to(config.device)
        with quiet_guided_backprop():
            maps = {name: e(x, 1)[0].cpu() for name, e in explainers.items()}
        x = x.cpu()
        for group, member in FIGURE_GROUPS.items():
            chosen = {n: m for n, m in maps.items() if member(n)}
            fig = viz.compare(x[0], chosen, boxes[k], columns=4, size=1.7)
            legible(fig)
            add_title(
                fig,
                f"{arch}, seed {seed}: + marks each map's maximum, green boxes the objects",
                fontsize=10,
            )
            path = folder / f"{arch}_seed{seed}_example{k}_{group}.png"
            figures.save(fig, path)
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

    folder = config.out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    top = config.curve_tolerances[-1]
    tolerances = [top * k / 96 for k in range(97)]
    paths = []
    for arch in dict.fromkeys(r.arch for r in runs):
        mine = runs_of(runs, arch)
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
                title=(
                    f"{arch}, {condition}, unsmoothed maps ({len(mine)} seeds, "
                    f"{mine[0].positives} images each)"
                ),
            )
            path = folder / f"curves_{arch}_{condition}.png"
            figures.save(fig, path)
            plt.close(fig)
            paths.append(path)
    return paths


def random_point_curve(
    boxes: list[torch.Tensor], size: int, config: Config
) -> tuple[list[float], float, float]:
    """The random point's hit rate at each of the curve's tolerances (exact), its
    normalised area up to the largest (midpoint rule over 64 tolerances), and its chance of
    landing on an object's pixel (tolerance 0: the energy of a one-pixel map there)."""
    shape = (size, size)

    def rate(t: float) -> float:
        return float(metrics.random_point_hit_rate(boxes, shape, t).nanmean())

    top = config.curve_tolerances[-1]
    area = sum(rate((k + 0.5) * top / 64) for k in range(64)) / 64
    return [rate(t) for t in config.curve_tolerances], area, rate(0.0)


def datasets(config: Config) -> tuple[SyntheticCXR, SyntheticCXR]:
    """A run's training images (seed 0) and test images (seed 1)."""
    options = {"small_central": config.small_central, "texture": config.texture}
    return (
        SyntheticCXR(config.train, config.size, seed=0, **options),
        SyntheticCXR(config.test, config.size, seed=1, **options),
    )


def training_config(config: Config, spec: Architecture) -> Config:
    """The run's settings for training ``spec``: its own lr where it has one, and its
    epochs as a multiple of the run's."""
    return dataclasses.replace(config, lr=spec.lr or config.lr, epochs=config.epochs * spec.epochs)


def run_protocol(train_set: Dataset[Any], test_set: Dataset[Any], config: Config) -> list[Run]:
    """Train every architecture and seed, and measure everything."""
    start = time.perf_counter()
    log(
        f"preparing data: {len(train_set)} training and {len(test_set)} test images of "
        f"{config.size}x{config.size}",
        config,
    )
    train_x, train_y, _ = materialise(train_set, config)
    test_x, test_y, test_boxes = materialise(test_set, config)
    positive = [i for i in range(len(test_y)) if len(test_boxes[i]) > 0]
    pos_boxes = [test_boxes[i] for i in positive]
    random_point = random_point_curve(pos_boxes, config.size, config)
    runs = []
    for arch in config.archs:
        spec = architecture(arch)
        inputs = standardised(train_x, test_x) if spec.standardise else (train_x, test_x)
        pos_x = inputs[1][positive]
        data = batches(pos_x, pos_boxes, device=config.device)
        training = training_config(config, spec)
        for seed in config.seeds:
            log(
                f"[{time.perf_counter() - start:6.1f} s] {arch}, seed {seed}: training "
                f"{training.epochs} epochs",
                config,
            )
            model = build_model(arch, seed, config.size)
            train(model, inputs[0], train_y, training, seed)
            accuracy, auc = classify(model, inputs[1], test_y)
            log(
                f"[{time.perf_counter() - start:6.1f} s] test accuracy {accuracy:.3f}, "
                f"AUC {auc:.3f}; measuring on {len(pos_x)} images",
                config,
            )
            run = Run(arch, seed, accuracy, auc, images=len(test_y), positives=len(pos_x))
            run.training = (training.epochs, training.lr)
            run.random_point = random_point
            result = measure(model, arch, data, config, "trained")
            run.scores["trained"] = {row.method: row.accuracy for row in result.rows}
            run.energy = {row.method: row.energy for row in result.rows}
            run.froc = {row.method: row.froc for row in result.rows}
            run.localization = {
                c: {row.method: row.value(c) for row in result.rows} for c in LOCALIZATION
            }
            run.distances["trained"] = result.distances()
            run.cells = finest_cells(model, arch, data[0][0][0])
            for condition, how in (("semi-randomised", "semi"), ("fully-randomised", "full")):
                randomised = sanity.randomize(model, how, seed=seed)
                result = measure(randomised, arch, data, config, condition)
                run.scores[condition] = {row.method: row.accuracy for row in result.rows}
                run.distances[condition] = result.distances()
            if seed == config.seeds[0] and config.figures:
                save_figures(model, arch, seed, pos_x, pos_boxes, config)
            run.elapsed = time.perf_counter() - start
            runs.append(run)
            checkpoint(runs, config)
    log(f"[{time.perf_counter() - start:6.1f} s] done", config)
    return runs


def checkpoint(runs: list[Run], config: Config) -> None:
    """The per-seed results of the runs finished so far, written after each one: a run
    stopped by a time limit (a lease of a GPU) keeps them, and ``examples/reproduction.py``
    reads them; the report at the end writes them again with the tables."""
    config.out.mkdir(parents=True, exist_ok=True)
    write_csv(runs, config.out / "results.csv")
    write_curves_csv(runs, config, config.out / "curves.csv")


def standardised(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets at zero mean and unit variance, with the training images' statistics.

    Transformers expect normalised inputs (torchvision's weights come with a ``Normalize``
    transform); the CNNs here do without, thanks to BatchNorm. The transformers are
    explained on the images they were trained on, the standardised ones: a map's maximum,
    hence the Pointing Game, does not depend on it for the layer-based methods.
    """
    mean, std = train.mean(), train.std()
    return (train - mean) / std, (test - mean) / std


# ---------------------------------------------------------------------------------------
# tables


def methods(runs: list[Run]) -> list[str]:
    names = list(runs[0].scores["trained"])
    return [n for n in names if not n.endswith("(smoothed)") and n not in REFERENCE_ROWS]


def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def fmt(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.3f} ± {s:.3f}"


def threads() -> str:
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n > 1 else ''}"


def machine(config: Config) -> str:
    """The accelerator a run used, for the tables' first line ("" on the CPU)."""
    device = torch.device(config.device)
    if device.type == "cuda":
        return f" and one {torch.cuda.get_device_name(device)}"
    return "" if device.type == "cpu" else f" and {device}"


def runs_of(runs: list[Run], arch: str) -> list[Run]:
    return [r for r in runs if r.arch == arch]


def smoothed_name(method: str) -> str:
    """The name of a method's row on its smoothed maps (the reference rows are not smoothed)."""
    return method if method in REFERENCE_ROWS else f"{method} (smoothed)"


def smoothed(run: Run, condition: str, method: str) -> float:
    """A method's Pointing Game on its smoothed maps: the paper smooths every map in its
    comparisons after Table 2."""
    return run.scores[condition][smoothed_name(method)]


def label(name: str) -> str:
    """A method's name in a table; the reference rows in italics."""
    return f"*{name}*" if name in REFERENCE_ROWS else name


def dom_pairs(archs: list[str]) -> list[tuple[str, str]]:
    """The architectures compared by DoM: the first two (the paper's CNNs), the next two
    (the transformers), and so on, in the order they ran."""
    return [(archs[i], archs[i + 1]) for i in range(0, len(archs) - 1, 2)]


def tables(runs: list[Run], config: Config) -> str:
    archs = list(dict.fromkeys(r.arch for r in runs))
    by_arch = {a: runs_of(runs, a) for a in archs}
    names = methods(runs)
    images, positives = runs[0].images, runs[0].positives
    kind = "textured" if config.texture else "smooth (earlier generator)"
    device = machine(config)
    lines = [
        f"Synthetic chest radiographs ({kind}"
        f"{', small central objects' if config.small_central else ''}), "
        f"{config.size}x{config.size}; {config.train} training images; "
        f"tested on {images} images, of which {positives} carry objects (the Pointing Game's "
        f"images); {len(config.seeds)} seeds per architecture {list(config.seeds)}; Pointing Game "
        f"tolerance {config.pointing_tolerance:.1f} px (15 px at 600 px, scaled). Mean ± std "
        f"over seeds. This run took {runs[-1].elapsed:.0f} s on {threads()}{device}, data "
        "generation, training and every measurement included.",
        "",
        "### Classifiers",
        "",
        "| architecture | training | accuracy | AUC |",
        "| --- | --- | --- | --- |",
    ]
    for a in archs:
        epochs, lr = by_arch[a][0].training
        lines.append(
            f"| {a} | {epochs} epochs, lr {lr:g} | {fmt([r.accuracy for r in by_arch[a]])} | "
            f"{fmt([r.auc for r in by_arch[a]])} |"
        )
    # Table 2: smoothing, one table per architecture (to fit the page)
    lines += ["", "### Pointing Game, unsmoothed and smoothed (Table 2)"]
    for a in archs:
        lines += ["", f"**{a}**", "", "| method | unsmoothed | smoothed |", "| --- | --- | --- |"]
        for n in [*names, "centre map", "random point"]:
            plain = fmt([r.scores["trained"][n] for r in by_arch[a]])
            after = fmt([smoothed(r, "trained", n) for r in by_arch[a]])
            lines.append(f"| {label(n)} | {plain} | {after} |")
    lines += curve_tables(runs, config, names)
    # beyond the Pointing Game: mass on the objects, and every object found
    lines += [
        "",
        "### Energy-based Pointing Game and FROC of the maps' peaks (trained models)",
        "",
        "Energy: the fraction of a map's mass on the objects. FROC: Object-CXR's score of "
        "each map's 10 best peaks as detections (mean sensitivity at 1/8 to 8 false "
        "positives per image), over the positive test images. The random point's "
        "energy is the chance that a uniformly random pixel lies on an object; it has no "
        "peaks, so no FROC.",
    ]
    on_region = f"{runs[0].random_point[2]:.3f}"
    for title, values in (("energy", "energy"), ("FROC", "froc")):
        lines += ["", f"**{title}**", ""]
        lines += ["| method | " + " | ".join(archs) + " |", "| --- |" + " --- |" * len(archs)]
        for n in [*names, "centre map"]:
            cells = [fmt([getattr(r, values)[n] for r in by_arch[a]]) for a in archs]
            lines.append(f"| {label(n)} | " + " | ".join(cells) + " |")
        # a uniformly random point: its energy is its chance of an object's pixel; no peaks
        random = on_region if values == "energy" else "—"
        lines.append("| *random point* |" + f" {random} |" * len(archs))
    lines += [
        "",
        "### mIoU, hit rate and AUPRC of the maps (trained models)",
        "",
        "CheXlocalize's measures with each image's boxes as one mask: mIoU of the map's "
        "Otsu segmentation, hit rate (the map's maximum on an object, no tolerance) and "
        "the pixel-level average precision (AUPRC), over the positive test images.",
    ]
    for column, title in LOCALIZATION.items():
        lines += ["", f"**{title}**", ""]
        lines += ["| method | " + " | ".join(archs) + " |", "| --- |" + " --- |" * len(archs)]
        for n in [*names, "centre map"]:
            cells = [
                fmt([r.localization.get(column, {}).get(n, float("nan")) for r in by_arch[a]])
                for a in archs
            ]
            lines.append(f"| {label(n)} | " + " | ".join(cells) + " |")
    # Tables 3-4: randomisation, one table per architecture (to fit the page)
    lines += [
        "",
        "### Trained versus semi- (SR) and fully-randomised (FR) models (Tables 3-4)",
        "",
        "Smoothed maps, as in the paper's Tables 3-6.",
    ]
    for a in archs:
        lines += ["", f"**{a}**", "", "| method | trained | SR | FR |", "| --- | --- | --- | --- |"]
        for n in [*names, "centre map", "random point"]:
            cells = [fmt([smoothed(r, c, n) for r in by_arch[a]]) for c in CONDITIONS]
            lines.append(f"| {label(n)} | " + " | ".join(cells) + " |")
    # Tables 5-6: consistency across architectures
    pairs = dom_pairs(archs)
    if pairs:
        lines += [
            "",
            "### Consistency across architectures: Difference of Means (Tables 5-6)",
            "",
            "Smoothed maps. DoM: the absolute difference of the two architectures' mean "
            "Pointing Game; p: "
            "the exact permutation test of the seeds' labels (small p: the architectures "
            "differ).",
        ]
    for a, b in pairs:
        lines += ["", f"**{a} and {b}**", ""]
        lines += [f"| method | {a} | {b} | DoM | p |", "| --- | --- | --- | --- | --- |"]
        for n in [*names, "centre map", "random point"]:
            xa = [smoothed(r, "trained", n) for r in by_arch[a]]
            xb = [smoothed(r, "trained", n) for r in by_arch[b]]
            d = metrics.dom(xa, xb)
            lines.append(f"| {label(n)} | {fmt(xa)} | {fmt(xb)} | {d.dom:.3f} | {d.p_value:.3f} |")
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
        "### The Pointing Game at every tolerance (trained models, unsmoothed maps)",
        "",
        f"Hit rate at {len(tolerances)} tolerances (the first is the paper's, scaled), mean "
        f"over seeds; area: the normalised area under the hit rate from 0 to {top:.1f} px, "
        "mean ± std over seeds (1: every point on an object). Below each table, the side "
        "of a cell of the finest layer each method reads (a map cannot point more finely).",
    ]
    for a in archs:
        mine = runs_of(runs, a)
        header = " | ".join(f"{t:.1f} px" for t in tolerances)
        lines += ["", f"**{a}**", "", f"| method | {header} | area |"]
        lines += ["| --- |" + " --- |" * (len(tolerances) + 1)]
        for n in [*names, "centre map"]:
            curves = [curve(r, "trained", n, config) for r in mine]
            rates = [
                float(torch.tensor([c.hit_rate[k] for c in curves]).mean())
                for k in range(len(tolerances))
            ]
            label = f"*{n}*" if n in REFERENCE_ROWS else n
            cells = " | ".join(f"{v:.3f}" for v in rates)
            lines.append(f"| {label} | {cells} | {fmt([c.auc for c in curves])} |")
        random_rates, random_area, _ = mine[0].random_point
        cells = " | ".join(f"{v:.3f}" for v in random_rates)
        lines.append(f"| *random point* | {cells} | {random_area:.3f} |")
        by_cell: dict[float, list[str]] = {}
        for n, side in mine[0].cells.items():
            if n in names:
                by_cell.setdefault(side, []).append(n)
        groups = [f"{side:.0f} px: {', '.join(ns)}" for side, ns in sorted(by_cell.items())]
        lines += ["", "Finest cells: " + "; ".join(groups) + "; every other method: 1 px."]
    lines += [
        "",
        f"### Area under the Pointing Game's curve (to {top:.1f} px, unsmoothed maps), "
        "trained and randomised",
    ]
    for a in archs:
        mine = runs_of(runs, a)
        lines += ["", f"**{a}**", "", "| method | trained | SR | FR |", "| --- | --- | --- | --- |"]
        for n in [*names, "centre map"]:
            cells = [fmt([curve(r, c, n, config).auc for r in mine]) for c in CONDITIONS]
            label = f"*{n}*" if n in REFERENCE_ROWS else n
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_curves_csv(runs: list[Run], config: Config, path: Path) -> None:
    """Each run's Pointing Game at the curves' tolerances and its normalised area, per
    condition and method (smoothed maps included), from the recorded distances."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["architecture", "seed", "condition", "method", "tolerance", "hit_rate"])
        for r in runs:
            for condition, by_method in r.distances.items():
                for method in by_method:
                    c = curve(r, condition, method, config)
                    rows = [*zip(config.curve_tolerances, c.hit_rate), ("area", c.auc)]
                    for tolerance, value in rows:
                        t = tolerance if isinstance(tolerance, str) else f"{tolerance:.4f}"
                        writer.writerow(
                            [r.arch, r.seed, condition, method, t, f"{float(value):.6f}"]
                        )


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
                *LOCALIZATION,
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
                            *(
                                f"{r.localization.get(c, {}).get(method, float('nan')):.6f}"
                                if trained
                                else "nan"
                                for c in LOCALIZATION
                            ),
                        ]
                    )


def summary(runs: list[Run], config: Config) -> str:
    """The run's main facts in sentences, every number read from the run."""
    archs = list(dict.fromkeys(r.arch for r in runs))
    names = methods(runs)
    tolerance, top = config.pointing_tolerance, config.curve_tolerances[-1]
    parts = [
        f"This run trained {len(config.seeds)} seed(s) of each architecture on "
        f"{config.train} images of {config.size}x{config.size} ("
        + ", ".join(f"{a}: {runs_of(runs, a)[0].training[0]} epochs" for a in archs)
        + f") and tested on {runs[0].images} images ({runs[0].positives} with objects), in "
        f"{runs[-1].elapsed:.0f} s on {threads()}{machine(config)}."
    ]
    for a in archs:
        mine = runs_of(runs, a)
        acc = [r.accuracy for r in mine]
        trained = {n: mean_std([r.scores["trained"][n] for r in mine])[0] for n in names}
        area = {n: mean_std([curve(r, "trained", n, config).auc for r in mine])[0] for n in names}
        best = max(trained, key=trained.__getitem__)
        best_area = max(area, key=area.__getitem__)
        normgrads = [n for n in names if n.startswith("NormGrad")]
        best_ng = max(normgrads, key=trained.__getitem__)
        centre = mean_std([r.scores["trained"]["centre map"] for r in mine])[0]
        multi = [n for n in names if n.startswith("NormGrad") and n.endswith("(M)")]
        cell = min(mine[0].cells[n] for n in multi) if multi else float("nan")
        parts.append(
            f"**{a}**: test accuracy {mean_std(acc)[0]:.3f} (lowest seed {min(acc):.3f}). At "
            f"the paper's tolerance ({tolerance:.1f} px, unsmoothed maps) {best} points best "
            f"({trained[best]:.3f}); "
            f"the best NormGrad variant is {best_ng} ({trained[best_ng]:.3f}), and the centre "
            f"map scores {centre:.3f}. "
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
    write_curves_csv(runs, config, config.out / "curves.csv")
    print("\n" + text)
    if config.figures:
        save_curves(runs, config)
    print(
        f"wrote {config.out / 'tables.md'}, {config.out / 'summary.md'}, "
        f"{config.out / 'results.csv'}, {config.out / 'curves.csv'} and {config.out / 'figures'}/"
    )
    return text


def parse(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="the two CNNs, two seeds, fewer images: about 4 minutes on 2 CPU cores",
    )
    mode.add_argument(
        "--paper",
        action="store_true",
        help="the paper's ResNet-50 and EfficientNet-B0 at 320 px, five seeds, on a GPU",
    )
    parser.add_argument(
        "--small-central", action="store_true", help="one small object near the centre (LVOT-like)"
    )
    parser.add_argument("--size", type=int)
    parser.add_argument("--train", type=int)
    parser.add_argument("--test", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--archs", nargs="+", choices=[*presets.available(), *TRANSFORMERS])
    parser.add_argument("--tolerance", type=float, help="Pointing Game radius in pixels")
    parser.add_argument(
        "--smooth-images",
        action="store_true",
        help="the earlier generator: no lung or bone texture, no quantum noise",
    )
    parser.add_argument(
        "--figures", type=int, help="example figures per architecture (0: none, no matplotlib)"
    )
    parser.add_argument("--device", help="where to train and explain (default: cpu; --paper: cuda)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--extra",
        nargs="+",
        default=[],
        choices=[*EXTRA_METHODS, *CAM_METHODS],
        help="more methods",
    )
    args = parser.parse_args(argv)
    config = Config(**(QUICK if args.quick else PAPER if args.paper else {}))
    if args.device is not None:
        config.device = args.device
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device: {config.device} asked for, but this machine has no CUDA device")
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
    config.extra = tuple(args.extra)
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
    runs = run_protocol(*datasets(config), config)
    report(runs, config)
    return runs


if __name__ == "__main__":
    main()
