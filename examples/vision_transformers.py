"""Vision transformers explained with NormGrad: which layer to read, measured.

Trains a small torchvision ``VisionTransformer`` and a small ``SwinTransformer`` from random
weights on the synthetic chest radiographs of ``synthetic_cxr.py`` (binary: foreign object
present or not), on the CPU, one seed, then measures with normgrad's public API:

- the classifiers' accuracy and AUC;
- the Pointing Game of NormGrad (scaling / conv1x1 / conv3x3) and Grad-CAM on every
  candidate single layer, and of multi-layer NormGrad, for the trained and the
  fully-randomised model, beside the centre map and the random point;
- how many maps of each candidate layer are constant (carry no spatial information): the
  last ViT block's output is such a layer, since only the class token is read after it.

It writes the tables as Markdown and one figure per architecture.

    python examples/vision_transformers.py            # the full run: 3 minutes on 2 idle CPU cores
    python examples/vision_transformers.py --quick    # tiny, for the tests: about 15 seconds
    python examples/vision_transformers.py --archs swin --epochs 16   # one model, other epochs

On cores shared with other work, expect up to three times as long (one torch thread by
default: more threads than free cores only contend).

The training loop, the data generation, the classifier metrics and the figure title are
``protocol.py``'s; the only addition is the input standardisation transformers need (see
``standardise``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

import normgrad
from normgrad import sanity

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures
import protocol
from synthetic_cxr import SyntheticCXR

VILS = ("scaling", "conv1x1", "conv3x3")
CONDITIONS = ("trained", "fully-randomised")
GRAD_CAM = "Grad-CAM"


@dataclass
class Config:
    size: int = 64
    train: int = 1600
    test: int = 400
    batch_size: int = 32
    seed: int = 0
    epochs: int | None = None  # default: each architecture's own (Architecture.epochs)
    threads: int = 1
    out: Path = Path("outputs/transformers")
    progress: bool = True

    @property
    def tolerance(self) -> float:
        """The Pointing Game radius: 15 px at 600 px, scaled, as in ``protocol.py``."""
        return protocol.Config(size=self.size).pointing_tolerance


QUICK = {"size": 32, "train": 64, "test": 32, "epochs": 1}


@dataclass(frozen=True)
class Architecture:
    """One model to train and the layers to measure on it."""

    name: str
    build: Callable[[int], nn.Module]
    """Image size -> a model with random weights (the caller seeds the generator)."""
    summary: str
    lr: float
    epochs: int
    candidates: dict[str, str]
    """Single layers to measure -> what each one is."""
    multi: dict[str, list[str]]
    """Multi-layer sets to measure, by label."""
    figure: dict[str, str]
    """The single layers shown in the figure (conv3x3), the first also with Grad-CAM, and
    the short name each panel's title gives them (legible at the page's width)."""


VIT_LAYERS = 4


def vit(size: int) -> nn.Module:
    return VisionTransformer(
        image_size=size,
        patch_size=8,
        num_layers=VIT_LAYERS,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=2,
    )


def block(i: int) -> str:
    return f"encoder.layers.encoder_layer_{i}"


def at_depth(fraction: float, depth: int) -> int:
    """The block whose output ends ``fraction`` of a ``depth``-block encoder."""
    return max(0, round(fraction * depth) - 1)


SWIN_DEPTHS = [1, 1, 2]


def swin(size: int) -> nn.Module:
    return SwinTransformer(
        patch_size=[4, 4],
        embed_dim=32,
        depths=SWIN_DEPTHS,
        num_heads=[2, 4, 8],
        window_size=[4, 4],
        mlp_ratio=2.0,
        stochastic_depth_prob=0.0,  # no stochastic depth in a 4-block model
        num_classes=2,
    )


def stage(i: int) -> str:
    """``features.{2i+1}``: torchvision's Swin alternates stages and patch merging."""
    return f"features.{2 * i + 1}"


_L = VIT_LAYERS
_QUARTERS = [block(at_depth(f, _L)) for f in (0.25, 0.5, 0.75)]
_LAST_STAGE = stage(len(SWIN_DEPTHS) - 1)
_LAST_BLOCK = f"{_LAST_STAGE}.{SWIN_DEPTHS[-1] - 1}"
_BEFORE_LAST_BLOCK = f"{_LAST_STAGE}.{SWIN_DEPTHS[-1] - 2}"  # the last stage has 2 blocks
_STAGES = [stage(i) for i in range(len(SWIN_DEPTHS))]

ARCHITECTURES = {
    "vit": Architecture(
        name="ViT",
        build=vit,
        summary=f"VisionTransformer: patch 8, {_L} blocks, hidden 64, 4 heads, MLP 128",
        lr=2e-4,
        epochs=8,
        candidates={
            block(_L - 2): "output of the second-to-last block",
            f"{block(_L - 1)}.ln_1": "last block's first norm (before its attention)",
            f"{block(_L - 1)}.ln_2": "last block's second norm (after its attention)",
            block(_L - 1): "output of the last block",
        },
        multi={
            "blocks at 1/4, 1/2, 3/4 + last ln_1": [*_QUARTERS, f"{block(_L - 1)}.ln_1"],
            "blocks at 1/4, 1/2, 3/4": list(_QUARTERS),
        },
        figure={
            f"{block(_L - 1)}.ln_1": f"layer_{_L - 1}.ln_1",
            block(_L - 2): f"layer_{_L - 2}",
            block(_L - 1): f"layer_{_L - 1}",
        },
    ),
    "swin": Architecture(
        name="Swin",
        build=swin,
        summary=(
            f"SwinTransformer: patch 4, embed 32, depths {SWIN_DEPTHS}, heads [2, 4, 8], "
            "window 4, MLP 2x"
        ),
        lr=3e-4,
        epochs=24,
        candidates={
            stage(len(SWIN_DEPTHS) - 2): "output of the second-to-last stage",
            _BEFORE_LAST_BLOCK: "output of the second-to-last block (the last block's input)",
            f"{_LAST_BLOCK}.norm1": "last block's first norm (before its attention)",
            f"{_LAST_BLOCK}.norm2": "last block's second norm (before its MLP)",
            _LAST_STAGE: "output of the last stage",
            "norm": "final norm (after the last stage)",
        },
        multi={
            "earlier stages + last block's norm1": [*_STAGES[:-1], f"{_LAST_BLOCK}.norm1"],
            "earlier stages + last block's input": [*_STAGES[:-1], _BEFORE_LAST_BLOCK],
            "earlier stages + final norm": [*_STAGES[:-1], "norm"],
            "every stage": list(_STAGES),
            "first block of stages 2-3 + last stage (ResNet recipe)": [
                *(f"{name}.0" for name in _STAGES[1:]),
                _LAST_STAGE,
            ],
        },
        figure={
            name: name
            for name in (f"{_LAST_BLOCK}.norm1", _LAST_STAGE, "norm", stage(len(SWIN_DEPTHS) - 2))
        },
    ),
}


@dataclass
class Result:
    """The measurements of one trained architecture."""

    arch: Architecture
    parameters: int
    epochs: int
    seconds: float
    accuracy: float
    auc: float
    shapes: dict[str, tuple[int, ...]]
    """Each candidate layer's output shape (one image)."""
    grids: dict[str, tuple[int, ...]]
    """Each candidate layer's map size, as normgrad reads it."""
    constant: dict[str, tuple[float, float, float]]
    """Per candidate layer: share of constant NormGrad conv1x1 and Grad-CAM maps, and the
    largest raw conv1x1 value (0 when the gradient there is 0)."""
    scores: dict[str, dict[str, normgrad.MethodScore]] = field(default_factory=dict)
    """condition -> explainer name -> Pointing Game row."""


def log(message: str, config: Config) -> None:
    if config.progress:
        print(message, flush=True)


# ---------------------------------------------------------------------------------------
# data


def standardise(
    train: torch.Tensor, test: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """Zero mean, unit variance with the training images' statistics.

    Transformers expect normalised inputs (torchvision's weights come with a ``Normalize``
    transform); the CNNs of ``protocol.py`` do without, thanks to BatchNorm. Without it,
    neither model here left chance level in the time budget. A map's maximum, hence the
    Pointing Game, does not depend on it.
    """
    mean, std = float(train.mean()), float(train.std())
    return (train - mean) / std, (test - mean) / std, (mean, std)


def output_shapes(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, Any]:
    """The output shape of each named layer for ``x`` (forward hooks, no gradient)."""
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _a, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name in layers
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


# ---------------------------------------------------------------------------------------
# explainers and measurements


def single_name(vil: str, layer: str) -> str:
    return f"NormGrad {vil} @ {layer}"


def multi_name(vil: str, label: str) -> str:
    return f"NormGrad {vil} (M: {label})"


def cam_name(layer: str) -> str:
    return f"{GRAD_CAM} @ {layer}"


def explainers_for(model: nn.Module, arch: Architecture) -> dict[str, normgrad.Explainer]:
    out: dict[str, normgrad.Explainer] = {}
    for layer in arch.candidates:
        for vil in VILS:
            out[single_name(vil, layer)] = normgrad.NormGrad(model, layer, vil)
        out[cam_name(layer)] = normgrad.GradCAM(model, layer)
    for label, layers in arch.multi.items():
        for vil in VILS:
            out[multi_name(vil, label)] = normgrad.NormGrad(model, layers, vil)
    return out


def measure(
    model: nn.Module, arch: Architecture, data: list[Any], config: Config
) -> dict[str, normgrad.MethodScore]:
    result = normgrad.evaluate(
        model, explainers_for(model, arch), data, tolerance=config.tolerance, progress=False
    )
    return {row.method: row for row in result.rows}


def constant_maps(
    model: nn.Module, arch: Architecture, data: list[Any]
) -> tuple[dict[str, tuple[float, float, float]], dict[str, tuple[int, ...]]]:
    """Per candidate layer: how many maps are constant over the image, and the largest raw
    NormGrad conv1x1 value (the product of the gradient's and the activation's norms)."""
    layers = list(arch.candidates)
    normgrad_constant = dict.fromkeys(layers, 0)
    cam_constant = dict.fromkeys(layers, 0)
    largest = dict.fromkeys(layers, 0.0)
    grids: dict[str, tuple[int, ...]] = {}
    images = 0
    explainer = normgrad.NormGrad(model, layers, "conv1x1")
    for x, labels, _ in data:
        raw = explainer.explain(x, labels).raw_layer_maps
        for layer in layers:
            maps = raw[layer].flatten(1)
            normgrad_constant[layer] += int((maps.amax(1) == maps.amin(1)).sum())
            largest[layer] = max(largest[layer], float(maps.abs().max()))
            grids[layer] = tuple(raw[layer].shape[2:])
            cam = normgrad.GradCAM(model, layer).explain(x, labels).raw_layer_maps[layer]
            cam = cam.flatten(1)
            cam_constant[layer] += int((cam.amax(1) == cam.amin(1)).sum())
        images += len(x)
    stats = {
        layer: (normgrad_constant[layer] / images, cam_constant[layer] / images, largest[layer])
        for layer in layers
    }
    return stats, grids


def run_architecture(
    key: str,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]],
    config: Config,
    start: float,
) -> Result:
    arch = ARCHITECTURES[key]
    train_x, train_y, test_x, test_y, test_boxes = data
    epochs = config.epochs if config.epochs is not None else arch.epochs
    log(f"[{time.perf_counter() - start:6.1f} s] {arch.name}: training {epochs} epochs", config)
    torch.manual_seed(config.seed)
    model = arch.build(config.size)
    training = protocol.Config(
        size=config.size,
        epochs=epochs,
        batch_size=config.batch_size,
        lr=arch.lr,
        progress=config.progress,
    )
    began = time.perf_counter()
    protocol.train(model, train_x, train_y, training, config.seed)
    seconds = time.perf_counter() - began
    accuracy, auc = protocol.classify(model, test_x, test_y)
    positive = [i for i in range(len(test_y)) if len(test_boxes[i]) > 0]
    pos_x, pos_boxes = test_x[positive], [test_boxes[i] for i in positive]
    batches = protocol.batches(pos_x, pos_boxes)
    log(
        f"    test accuracy {accuracy:.3f}, AUC {auc:.3f}; Pointing Game on {len(pos_x)} images",
        config,
    )
    constant, grids = constant_maps(model, arch, batches)
    result = Result(
        arch=arch,
        parameters=sum(p.numel() for p in model.parameters()),
        epochs=epochs,
        seconds=seconds,
        accuracy=accuracy,
        auc=auc,
        shapes=output_shapes(model, test_x[:1], list(arch.candidates)),
        grids=grids,
        constant=constant,
    )
    result.scores["trained"] = measure(model, arch, batches, config)
    randomised = sanity.randomize(model, "full", seed=0)
    result.scores["fully-randomised"] = measure(randomised, arch, batches, config)
    save_figure(model, randomised, arch, pos_x[0], pos_boxes[0], config)
    return result


# ---------------------------------------------------------------------------------------
# figure

# the panels' titles, in points: at 100 dpi, 4 panels of 1.7 inches make a figure about as
# wide as the page's text column (688 px at 1280 px), shown at its own size, where 10 pt
# are 14 px
TITLE_SIZE = 10


def save_figure(
    model: nn.Module,
    randomised: nn.Module,
    arch: Architecture,
    image: torch.Tensor,
    boxes: torch.Tensor,
    config: Config,
) -> Path:
    """The first positive test image (not a chosen one) and the maps of the trained model,
    with the multi-layer map of the fully-randomised model last."""
    import matplotlib

    from normgrad import viz

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = image[None]
    first, short = next(iter(arch.figure.items()))
    layers = next(iter(arch.multi.values()))
    explainers: dict[str, normgrad.Explainer] = {
        f"NormGrad conv3x3\n{label}": normgrad.NormGrad(model, name, "conv3x3")
        for name, label in arch.figure.items()
    }
    explainers[f"Grad-CAM\n{short}"] = normgrad.GradCAM(model, first)
    explainers["NormGrad conv3x3\nmulti-layer (M)"] = normgrad.NormGrad(model, layers, "conv3x3")
    explainers["the same (M),\nfully randomised"] = normgrad.NormGrad(randomised, layers, "conv3x3")
    maps = {name: e(x, 1)[0] for name, e in explainers.items()}
    fig = viz.compare(image, maps, boxes, columns=4, size=1.7)
    protocol.legible(fig, TITLE_SIZE)
    protocol.add_title(
        fig,
        f"{arch.name}: + marks each map's maximum, green boxes the objects",
        fontsize=TITLE_SIZE,
    )
    directory = config.out / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    path = figures.save(fig, directory / f"{arch.name.lower()}.png", dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------
# tables


def cell(scores: dict[str, dict[str, normgrad.MethodScore]], name: str) -> str:
    """``trained / FR``: the Pointing Game of the trained and the randomised model."""
    return " / ".join(f"{scores[c][name].accuracy:.3f}" for c in CONDITIONS)


def shape_text(shape: tuple[int, ...], grid: tuple[int, ...]) -> str:
    spatial = "×".join(map(str, grid))
    if len(shape) == 3:
        return f"{shape[1]} tokens → {spatial}"
    return f"{tuple(shape[1:])} → {spatial}"


def tables(results: list[Result], config: Config) -> str:
    """The measurements as Markdown tables that fit the page (at most five columns; a
    score cell reads trained / FR)."""
    n_images = next(iter(results[0].scores["trained"].values())).total
    half_width = max(
        (row.high - row.low) / 2
        for r in results
        for row in r.scores["trained"].values()
        if row.high == row.high  # not NaN (the random point has no interval)
    )
    lines = [
        f"Synthetic chest radiographs, {config.size}x{config.size}, {config.train} training / "
        f"{config.test} test images (Pointing Game on the {n_images} positive ones), seed "
        f"{config.seed}, CPU; inputs standardised with the training images' mean and std. "
        f"Pointing Game tolerance {config.tolerance:.1f} px (15 px at "
        f"600 px, scaled). FR: the same model fully randomised "
        f"(`sanity.randomize(model, 'full', seed=0)`). One seed: the 95% Wilson intervals of "
        f"the trained scores are up to ±{half_width:.2f} wide. A score cell reads trained / FR.",
        "",
        "### Classifiers",
        "",
        "| model | architecture | parameters | training (time) | accuracy / AUC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.arch.name} | {r.arch.summary} | {r.parameters:,} | {r.epochs} epochs, "
            f"AdamW, lr {r.arch.lr:g} (one-cycle to {3 * r.arch.lr:g}), {r.seconds:.0f} s "
            f"| {r.accuracy:.3f} / {r.auc:.3f} |"
        )
    for r in results:
        lines += single_layers(r)
        lines += [
            "",
            f"### {r.arch.name}: constant maps (trained model, {n_images} positive test images)",
            "",
            "| layer | constant NormGrad maps | constant Grad-CAM maps | largest raw conv1x1 value |",
            "| --- | --- | --- | --- |",
        ]
        for layer in r.arch.candidates:
            ng, cam, largest = r.constant[layer]
            lines.append(f"| `{layer}` | {ng:.0%} | {cam:.0%} | {largest:.3g} |")
        lines += [
            "",
            f"### {r.arch.name}: multi-layer NormGrad, Pointing Game (trained / FR)",
            "",
            "| layers | scaling | conv1x1 | conv3x3 |",
            "| --- | --- | --- | --- |",
        ]
        for label, layers in r.arch.multi.items():
            cells = [cell(r.scores, multi_name(vil, label)) for vil in VILS]
            listed = ", ".join(f"`{layer}`" for layer in layers)
            lines.append(f"| {label}: {listed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def single_layers(r: Result) -> list[str]:
    """The single layers: what each is, then its Pointing Game per explainer."""
    lines = [
        "",
        f"### {r.arch.name}: single layers, Pointing Game (trained / FR)",
        "",
        "| layer | what it is | output → map |",
        "| --- | --- | --- |",
    ]
    for layer, what in r.arch.candidates.items():
        lines.append(f"| `{layer}` | {what} | {shape_text(r.shapes[layer], r.grids[layer])} |")
    lines += [
        "",
        "| layer | NormGrad scaling | NormGrad conv1x1 | NormGrad conv3x3 | Grad-CAM |",
        "| --- | --- | --- | --- | --- |",
    ]
    for layer in r.arch.candidates:
        cells = [cell(r.scores, single_name(vil, layer)) for vil in VILS]
        cells.append(cell(r.scores, cam_name(layer)))
        lines.append(f"| `{layer}` | " + " | ".join(cells) + " |")
    trained = r.scores["trained"]
    for base in ("centre map", "random point"):
        value = f"{trained[base].accuracy:.3f}"
        lines.append(f"| *{base}* | " + " | ".join([value] * 4) + " |")
    return lines


# ---------------------------------------------------------------------------------------
# command line


def parse(argv: Sequence[str] | None = None) -> tuple[Config, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny: 32 px, 64/32 images, 1 epoch")
    parser.add_argument("--size", type=int)
    parser.add_argument("--train", type=int)
    parser.add_argument("--test", type=int)
    parser.add_argument("--epochs", type=int, help="for both models (default: each its own)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--archs", nargs="+", choices=list(ARCHITECTURES), default=["vit", "swin"])
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default 1: on 2 shared cores more threads only contend)",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = Config(**(QUICK if args.quick else {}))
    for name in ("size", "train", "test", "epochs", "seed", "threads", "out"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    config.progress = not args.quiet
    if config.size % 8:
        parser.error("--size: expected a multiple of 8 (the ViT's patch)")
    return config, args.archs


def main(argv: Sequence[str] | None = None) -> list[Result]:
    config, archs = parse(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        start = time.perf_counter()
        log(
            f"preparing data: {config.train} training and {config.test} test images of "
            f"{config.size}x{config.size}",
            config,
        )
        train_x, train_y, _ = protocol.materialise(
            SyntheticCXR(config.train, config.size, seed=0), protocol.Config()
        )
        test_x, test_y, test_boxes = protocol.materialise(
            SyntheticCXR(config.test, config.size, seed=1), protocol.Config()
        )
        train_x, test_x, _ = standardise(train_x, test_x)
        data = (train_x, train_y, test_x, test_y, test_boxes)
        results = [run_architecture(key, data, config, start) for key in archs]
        text = tables(results, config)
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "tables.md").write_text(text)
        log(f"[{time.perf_counter() - start:6.1f} s] done", config)
        if config.progress:
            print("\n" + text)
            print(f"wrote {config.out / 'tables.md'} and {config.out / 'figures'}/")
        return results
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
