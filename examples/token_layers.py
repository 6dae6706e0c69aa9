"""Where a transformer's token maps place the objects, layer by layer.

Trains the full mode's small ViT and small Swin (``protocol.py``: the same images, recipe
and seeds) and measures, at every token layer in the order the image passes through them,
the Pointing Game of three maps of the class explained ("object present"):

- ``|a|``: the norm of each token's activation;
- ``|g|``: the norm of the gradient of the class score with respect to it;
- ``|a| |g|``: their product, NormGrad conv1x1's map at that layer (checked here against
  normgrad's own raw layer maps, so the token grids read by hand below are normgrad's).

It writes one table per architecture (``token-layers.md``), with the centre map and the
random point at the same tolerance, and the counts: what the reproduction page uses to
say where, in the Swin, the maps stop placing the objects.

    python examples/token_layers.py --out docs/results/full   # 10 models: 4 minutes on 2 cores
    python examples/token_layers.py --quick                   # tiny, for the tests
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import normgrad
from normgrad import metrics
from normgrad.functional import upsample

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol


@dataclass(frozen=True)
class TokenLayer:
    """A layer whose output holds one vector per token, and how its tokens are laid out:
    ``"nchw"`` (a convolution's output), ``"nhwc"`` (torchvision Swin) or ``"class"``
    (``(N, 1 + H * W, C)``, a class token first: torchvision ViT)."""

    name: str
    what: str
    layout: str


VIT_PREFIX = "encoder.layers."


def vit_layers(blocks: int) -> list[TokenLayer]:
    """The stem's tokens, then each block's first norm (its attention's input) and output;
    the last block's output is left out: only the class token is read after it, so the
    gradient of its patch tokens is zero."""
    layers = [TokenLayer("conv_proj", "stem", "nchw")]
    for i in range(blocks):
        block = f"{VIT_PREFIX}encoder_layer_{i}"
        layers.append(TokenLayer(f"{block}.ln_1", "attention input", "class"))
        if i < blocks - 1:
            layers.append(TokenLayer(block, "block output", "class"))
    return layers


def swin_layers(depths: Sequence[int], grid: int, window: int) -> list[TokenLayer]:
    """The stem's tokens, then each block's first norm (its attention's input) and each
    block's output (a stage's last: the stage's output, ``features.{2s+1}``), the patch
    merging between stages, and the final norm. torchvision alternates stages and patch
    merging; every second block of a stage shifts its windows, where the stage's grid
    (``grid`` tokens a side in the first) is larger than one window."""
    layers = [TokenLayer("features.0", "stem", "nhwc")]
    for s, depth in enumerate(depths):
        stage = f"features.{2 * s + 1}"
        if s > 0:
            layers.append(TokenLayer(f"features.{2 * s}", "patch merging", "nhwc"))
        for b in range(depth):
            shifted = ", shifted" if b % 2 and grid >> s > window else ""
            layers.append(TokenLayer(f"{stage}.{b}.norm1", f"attention input{shifted}", "nhwc"))
            last = b == depth - 1
            output = (stage, "stage output") if last else (f"{stage}.{b}", "block output")
            layers.append(TokenLayer(*output, "nhwc"))
    layers.append(TokenLayer("norm", "final norm", "nhwc"))
    return layers


def token_layers(arch: str, size: int) -> list[TokenLayer]:
    """The token layers of the protocol's transformer ``arch`` at images of ``size``."""
    if arch == "small_vit":
        return vit_layers(4)
    return swin_layers(protocol.SWIN_DEPTHS, size // protocol.TOKEN, protocol.SWIN_WINDOW)


MAPS = ("|a|", "|g|", "|a| |g|")


def token_norms(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    """The norm of each token's vector, ``(N, H, W)``."""
    if layout == "nchw":
        return tensor.norm(dim=1)
    if layout == "nhwc":
        return tensor.norm(dim=-1)
    patches = tensor[:, 1:]
    side = round(patches.shape[1] ** 0.5)
    return patches.norm(dim=-1).unflatten(1, (side, side))


def layer_maps(
    model: nn.Module, layers: list[TokenLayer], x: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[str, torch.Tensor]]:
    """The three maps at every layer, ``(N, 1, H, W)`` at the layers' own grids: from one
    forward pass with hooks, and the gradients of the summed class scores with respect to
    the layers' outputs (``autograd.grad``: nothing is written to the model)."""
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[layer.name].register_forward_hook(
            lambda _m, _a, out, name=layer.name: outputs.__setitem__(name, out)
        )
        for layer in layers
    ]
    try:
        scores = model(x).gather(1, labels[:, None]).sum()
    finally:
        for handle in handles:
            handle.remove()
    grads = torch.autograd.grad(scores, [outputs[layer.name] for layer in layers])
    maps = {}
    for layer, grad in zip(layers, grads):
        a = token_norms(outputs[layer.name].detach(), layer.layout)[:, None]
        g = token_norms(grad, layer.layout)[:, None]
        maps[layer.name] = dict(zip(MAPS, (a, g, a * g)))
    return maps


def check_against_normgrad(
    model: nn.Module, layers: list[TokenLayer], x: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[str, torch.Tensor]]:
    """``layer_maps``, after checking that its product is NormGrad conv1x1's raw map at
    every layer (a token grid misread here would not match normgrad's)."""
    maps = layer_maps(model, layers, x, labels)
    explainer = normgrad.NormGrad(model, [layer.name for layer in layers], "conv1x1")
    raw = explainer.explain(x, labels).raw_layer_maps
    for layer in layers:
        ours, theirs = maps[layer.name]["|a| |g|"], raw[layer.name]
        scale = theirs.abs().amax().clamp_min(1e-30)
        if ours.shape != theirs.shape or not torch.allclose(
            ours / scale, theirs / scale, atol=1e-4
        ):
            raise AssertionError(f"{layer.name}: |a| |g| differs from NormGrad conv1x1's map")
    return maps


@dataclass
class Config:
    protocol: protocol.Config = dataclasses.field(default_factory=protocol.Config)
    archs: Sequence[str] = ("small_vit", "small_swin")
    out: Path = Path("outputs/token-layers")

    @property
    def tolerance(self) -> float:
        """The curves' largest tolerance (8 times the paper's, scaled): a token's width and
        more, so that a map on a coarse grid can still reach an object it places."""
        return self.protocol.curve_tolerances[-1]


def measure(
    arch: str, data: tuple[torch.Tensor, ...], boxes: list[torch.Tensor], config: Config
) -> tuple[dict[str, dict[str, list[float]]], list[float]]:
    """Per layer and map, the Pointing Game of each seed; and each seed's test accuracy."""
    train_x, train_y, test_x, test_y, pos_x = data
    training = protocol.training_config(config.protocol, protocol.architecture(arch))
    layers = token_layers(arch, config.protocol.size)
    hits: dict[str, dict[str, list[float]]] = {
        layer.name: {m: [] for m in MAPS} for layer in layers
    }
    accuracies = []
    for seed in config.protocol.seeds:
        model = protocol.build_model(arch, seed, config.protocol.size)
        protocol.train(model, train_x, train_y, training, seed)
        accuracies.append(protocol.classify(model, test_x, test_y)[0])
        per_seed: dict[str, dict[str, list[torch.Tensor]]] = {
            layer.name: {m: [] for m in MAPS} for layer in layers
        }
        for x, labels, batch_boxes in protocol.batches(pos_x, boxes, size=50):
            maps = check_against_normgrad(model, layers, x, labels)
            for name, by_map in maps.items():
                for m, tokens in by_map.items():
                    image = upsample(tokens, x.shape[2:])
                    hit = metrics.pointing_game(image, batch_boxes, config.tolerance)
                    per_seed[name][m].append(hit)
        for name, by_map in per_seed.items():
            for m, batches in by_map.items():
                hits[name][m].append(float(torch.cat(batches).float().nanmean()))
    return hits, accuracies


def table(
    arch: str,
    hits: dict[str, dict[str, list[float]]],
    accuracies: list[float],
    references: tuple[float, float],
    counts: tuple[int, int],
    config: Config,
) -> str:
    preset = protocol.architecture(arch).layers
    seeds = len(accuracies)
    mean_accuracy = sum(accuracies) / seeds
    lines = [
        f"**{arch}**: {seeds} seed(s), test accuracy {mean_accuracy:.3f} (lowest "
        f"{min(accuracies):.3f}); Pointing Game at {config.tolerance:g} px on the "
        f"{counts[1]} test images with objects (of {counts[0]}), mean over the seeds"
        + (f"; the ViT's layers under `{VIT_PREFIX}`" if arch == "small_vit" else "")
        + "; (S): the preset's single layer, (M): its multi-layer set.",
        "",
        "| layer | what it is | \\|a\\| | \\|g\\| | \\|a\\| \\|g\\| |",
        "| --- | --- | --- | --- | --- |",
    ]
    for layer in token_layers(arch, config.protocol.size):
        chosen = (("S", [preset.single]), ("M", preset.multi))
        roles = [role for role, names in chosen if layer.name in names]
        marks = f" ({', '.join(roles)})" if roles else ""
        row = [sum(v) / seeds for v in (hits[layer.name][m] for m in MAPS)]
        name = layer.name.removeprefix(VIT_PREFIX)
        values = " | ".join(f"{v:.2f}" for v in row)
        lines.append(f"| `{name}`{marks} | {layer.what} | {values} |")
    for reference, value in zip(("centre map", "random point"), references):
        lines.append(f"| {reference} | | {value:.2f} | {value:.2f} | {value:.2f} |")
    return "\n".join(lines)


def run(config: Config) -> str:
    start = time.perf_counter()
    size = config.protocol.size
    train_set, test_set = protocol.datasets(config.protocol)
    train_x, train_y, _ = protocol.materialise(train_set, config.protocol)
    test_x, test_y, test_boxes = protocol.materialise(test_set, config.protocol)
    train_x, test_x = protocol.standardised(train_x, test_x)
    positive = [i for i in range(len(test_y)) if len(test_boxes[i]) > 0]
    boxes = [test_boxes[i] for i in positive]
    pos_x = test_x[positive]
    centre_maps = normgrad.CenterMap()(pos_x)
    centre = float(metrics.pointing_game(centre_maps, boxes, config.tolerance).float().nanmean())
    random_point = float(
        metrics.random_point_hit_rate(boxes, (size, size), config.tolerance).nanmean()
    )
    sections = []
    for arch in config.archs:
        protocol.log(f"[{time.perf_counter() - start:6.1f} s] {arch}", config.protocol)
        data = (train_x, train_y, test_x, test_y, pos_x)
        hits, accuracies = measure(arch, data, boxes, config)
        counts = (len(test_y), len(positive))
        sections.append(table(arch, hits, accuracies, (centre, random_point), counts, config))
    head = (
        f"The maps of every token layer, from `python examples/token_layers.py` "
        f"({time.perf_counter() - start:.0f} s on {protocol.threads()}): the full mode's "
        "images, recipe and seeds, the models retrained."
    )
    return "\n\n".join([head, *sections]) + "\n"


def parse(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny, for the tests")
    parser.add_argument("--out", type=Path, default=Config.out)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    settings = protocol.Config(progress=not args.quiet)
    if args.quick:
        settings = dataclasses.replace(settings, size=32, train=64, test=32, epochs=1, seeds=(0,))
    return Config(protocol=settings, out=args.out)


def main(argv: Sequence[str] | None = None) -> str:
    config = parse(argv)
    text = run(config)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "token-layers.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
