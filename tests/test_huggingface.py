"""normgrad on Hugging Face ``transformers`` image classifiers, built from small configs with
random weights (nothing is downloaded).

- ViT, DeiT (distilled, with its teacher head: two prefix tokens), DINOv2 with register
  tokens, BEiT, Swin (tokens with no prefix, one grid per stage, inputs padded to the
  patch) and ConvNeXt (channels first, its block norms channels last): the layout of each
  layer is detected from the model, and the NormGrad and Grad-CAM maps equal the literal
  references (``tests/reference/maps.py``) on the grid reshaped here by hand, for drawn
  patch sizes, register counts and input sizes (Hypothesis); the input gradient equals
  the one computed by hand.
- The model's output is read by one rule: a ``ModelOutput``, a dict with ``"logits"``, a
  tuple whose first element is the logits and the logits themselves give the same maps
  in every explainer; a callable target receives the output unchanged (SmoothGrad and
  Integrated Gradients: one per copy, of the same type); an output the rule cannot read
  is refused naming ``target``.
- Input sizes other than the config's: a ViT through a wrapper that passes
  ``interpolate_pos_encoding=True`` (normgrad calls ``model(x)`` only).
- The presets ``hf_vit`` and ``hf_swin`` name real layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import normgrad
from normgrad import presets

from .conftest import examples, requires_cuda
from .explainers import EXPLAINERS
from .lifecycle import assert_unchanged, snapshot
from .reference.maps import reference_grad_cam, reference_normgrad_map

transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face tests need transformers (the test extra)"
)

SMALL = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2}


def _seeded(factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` with weights drawn from seed 0, in float64 and training mode (the
    explainers must restore it); the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = factory()
    return model.double().train()


@dataclass(frozen=True)
class Built:
    """A model, its input size, and each explained layer's layout written out by hand:
    ``("tokens", prefix, grid)``, ``("nchw", grid)`` or ``("nhwc", grid)``."""

    model: nn.Module
    size: tuple[int, int]
    layers: dict[str, tuple[Any, ...]]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _vit_like(draw: st.DrawFn, family: str) -> Built:
    """ViT, DeiT with teacher, DINOv2 with registers or BEiT: patches of a drawn size on a
    drawn, usually non-square grid."""
    patch = draw(st.sampled_from([2, 4, 8]))
    grid = (draw(st.integers(2, 4)), draw(st.integers(2, 5)))
    # DINOv2 takes any size (its patch embedding drops the remainder): others a multiple
    extra = draw(st.integers(0, patch - 1)) if family == "dinov2-registers" else 0
    size = (grid[0] * patch + extra, grid[1] * patch)
    common = dict(SMALL, patch_size=patch, intermediate_size=32, num_labels=3)
    if family == "dinov2-registers":
        registers = draw(st.integers(0, 5))
        config = transformers.Dinov2WithRegistersConfig(
            image_size=max(size), num_register_tokens=registers, **common
        )
        model = _seeded(lambda: transformers.Dinov2WithRegistersForImageClassification(config))
        base = "dinov2_with_registers.encoder.layer"
        names = [f"{base}.0", f"{base}.1.norm1"]
        prefix = 1 + registers
    else:
        kind = {
            "vit": (transformers.ViTConfig, transformers.ViTForImageClassification, 1),
            "deit-teacher": (
                transformers.DeiTConfig,
                transformers.DeiTForImageClassificationWithTeacher,
                2,  # class and distillation tokens
            ),
            "beit": (transformers.BeitConfig, transformers.BeitForImageClassification, 1),
        }
        config_type, model_type, prefix = kind[family]
        config = config_type(image_size=size, **common)
        model = _seeded(lambda: model_type(config))
        base = family.split("-")[0]
        names = [f"{base}.layers.0", f"{base}.layers.1.layernorm_before"]
    return Built(model, size, {n: ("tokens", prefix, grid) for n in names})


def _swin(draw: st.DrawFn) -> Built:
    """Swin of two stages on any input size: patches padded to the patch size, the grid
    halved (rounded up) by the patch merging."""
    patch = draw(st.sampled_from([2, 4]))
    size = (draw(st.integers(3, 5)) * 4 + draw(st.integers(0, 3)), draw(st.integers(12, 22)))
    config = transformers.SwinConfig(
        image_size=max(size),
        patch_size=patch,
        embed_dim=8,
        depths=[1, 2],
        num_heads=[2, 2],
        window_size=2,
        num_labels=3,
    )
    model = _seeded(lambda: transformers.SwinForImageClassification(config))
    first = (_ceil(size[0], patch), _ceil(size[1], patch))
    second = (_ceil(first[0], 2), _ceil(first[1], 2))
    return Built(
        model,
        size,
        {
            "swin.encoder.layers.0.blocks.0": ("tokens", 0, first),  # a tuple's first tensor
            "swin.encoder.layers.0": ("tokens", 0, second),  # after the patch merging
            "swin.encoder.layers.1.blocks.1.layernorm_before": ("tokens", 0, second),
        },
    )


def _convnext(draw: st.DrawFn) -> Built:
    """ConvNeXt: stages channels first, the norm inside a block channels last."""
    size = (draw(st.integers(4, 7)) * 4, draw(st.integers(4, 7)) * 4)
    config = transformers.ConvNextConfig(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3, layer_scale_init_value=1.0
    )
    model = _seeded(lambda: transformers.ConvNextForImageClassification(config))
    first = (size[0] // 4, size[1] // 4)
    second = (first[0] // 2, first[1] // 2)
    return Built(
        model,
        size,
        {
            "convnext.encoder.stages.0": ("nchw", first),
            "convnext.encoder.stages.1.layers.0.layernorm": ("nhwc", second),
            "convnext.encoder.stages.1": ("nchw", second),
        },
    )


FAMILIES: dict[str, Callable[[st.DrawFn], Built]] = {
    "vit": lambda draw: _vit_like(draw, "vit"),
    "deit-teacher": lambda draw: _vit_like(draw, "deit-teacher"),
    "dinov2-registers": lambda draw: _vit_like(draw, "dinov2-registers"),
    "beit": lambda draw: _vit_like(draw, "beit"),
    "swin": _swin,
    "convnext": _convnext,
}


def _by_hand(t: torch.Tensor, layout: tuple[Any, ...]) -> torch.Tensor:
    """A layer's output as ``(N, C, h, w)``, read as the hand-written layout says."""
    if layout[0] == "tokens":
        _, prefix, grid = layout
        n, tokens, c = t.shape
        assert tokens == prefix + grid[0] * grid[1]
        return t[:, prefix:].reshape(n, *grid, c).permute(0, 3, 1, 2)
    grid = layout[1]
    if layout[0] == "nhwc":
        assert t.shape[1:3] == grid
        return t.permute(0, 3, 1, 2)
    assert t.shape[2:] == grid
    return t


def _reference(
    built: Built, x: torch.Tensor, target: torch.Tensor
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Each layer's activation and gradient of the target logits, reshaped by hand, and
    the input gradient: forward hooks keep the outputs (a tuple's first element), one
    ``autograd.grad`` of ``logits[n, target[n]]`` summed."""
    modules = dict(built.model.named_modules())
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            kept[name] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in built.layers]
    flags = [(m, m.training) for m in built.model.modules()]
    try:
        built.model.eval()
        with torch.enable_grad():
            x_in = x.clone().requires_grad_()
            logits = built.model(x_in).logits
            score = logits.gather(1, target[:, None]).sum()
            names = list(built.layers)
            *grads, x_grad = torch.autograd.grad(score, [kept[n] for n in names] + [x_in])
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag
    pairs = {
        n: (_by_hand(kept[n].detach(), built.layers[n]), _by_hand(g, built.layers[n]))
        for n, g in zip(names, grads)
    }
    return pairs, x_grad


@pytest.mark.filterwarnings("ignore:GuidedBackprop. no ReLU ran")  # GELU: not guided
@pytest.mark.parametrize("family", list(FAMILIES))
@examples(4)
@given(data=st.data())
def test_maps_equal_the_references_on_the_grid_by_hand(family: str, data: st.DataObject) -> None:
    built = data.draw(st.composite(lambda draw: FAMILIES[family](draw))())
    n = 2
    x = torch.randn(n, 3, *built.size, generator=torch.Generator().manual_seed(1)).double()
    target = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    logits = Returning(built.model, "tensor")
    before = snapshot(logits, x)
    pairs, x_grad = _reference(built, x, target)
    tol = {"rtol": 1e-9, "atol": 1e-12}
    for name, (activation, gradient) in pairs.items():
        grid = activation.shape[2:]
        ours = normgrad.NormGrad(built.model, name, "conv3x3").explain(x, target)
        assert ours.raw_layer_maps[name].shape == (n, 1, *grid), name
        expected = reference_normgrad_map(activation, gradient, "conv", 3)
        torch.testing.assert_close(ours.raw_layer_maps[name], expected, **tol)
        cam = normgrad.GradCAM(built.model, name).explain(x, target)
        expected_cam = reference_grad_cam(activation, gradient)
        torch.testing.assert_close(cam.raw_layer_maps[name], expected_cam, **tol)
        guided = normgrad.GuidedGradCAM(built.model, name).explain(x, target)
        torch.testing.assert_close(guided.raw_layer_maps[name], expected_cam, **tol)
        if built.layers[name][0] == "tokens":  # the layout stated gives the same maps
            _, prefix, hand_grid = built.layers[name]
            stated = normgrad.NormGrad(
                built.model, name, "conv3x3", layout=normgrad.Tokens(prefix, hand_grid)
            ).explain(x, target)
            assert torch.equal(stated.raw_layer_maps[name], ours.raw_layer_maps[name])
    gradient = normgrad.Gradient(built.model).explain(x, target)
    assert gradient.attribution is not None
    torch.testing.assert_close(gradient.attribution, x_grad, **tol)
    assert_unchanged(before, snapshot(logits, x))


# --------------------------------------------------------------------------------------
# the model output, read by one rule
# --------------------------------------------------------------------------------------


class Returning(nn.Module):
    """A Hugging Face classifier whose output is its own (``"model-output"``) or given
    another form: ``"tuple"`` (``return_dict=False``), ``"dict"`` (a plain dict with
    ``"logits"`` among others, not first), ``"tensor"`` (the logits alone) or ``"out"``
    (a dict without ``"logits"``)."""

    def __init__(self, model: nn.Module, form: str) -> None:
        super().__init__()
        self.model, self.form = model, form

    def forward(self, x: torch.Tensor) -> Any:
        if self.form == "tuple":
            return self.model(x, return_dict=False)
        out = self.model(x)
        if self.form == "model-output":
            return out
        if self.form == "dict":
            return {"features": out.logits * 2, "logits": out.logits}
        if self.form == "out":
            return {"out": out.logits}
        return out.logits


def _deit() -> nn.Module:
    """A distilled DeiT with its teacher head: its output holds three logits tensors,
    ``logits`` (the mean of the two heads) first."""
    config = transformers.DeiTConfig(
        image_size=(16, 24), patch_size=8, intermediate_size=32, num_labels=3, **SMALL
    )
    return _seeded(lambda: transformers.DeiTForImageClassificationWithTeacher(config))


@pytest.fixture(scope="module")
def deit() -> nn.Module:
    return _deit()


LAYER = "model.deit.layers.1.layernorm_before"


@pytest.mark.parametrize("explainer", list(EXPLAINERS))
def test_every_output_form_gives_the_logits_maps(explainer: str, deit: nn.Module) -> None:
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(2)).double()
    results = {}
    for form in ("tensor", "model-output", "tuple", "dict"):
        model = Returning(deit, form)
        for target in (None, 2, torch.tensor([1, 0])):
            torch.manual_seed(3)  # SmoothGrad's noise
            explanation = EXPLAINERS[explainer](model, [LAYER]).explain(x, target)
            results[form, str(target)] = explanation.saliency
    for (form, target), saliency in results.items():
        assert torch.equal(saliency, results["tensor", target]), (form, target)
    tensor_model = Returning(deit, "tensor")
    with torch.no_grad():  # no dropout in this config: train mode predicts as eval mode
        classes = tensor_model(x).argmax(1)
    torch.manual_seed(3)
    by_class = EXPLAINERS[explainer](tensor_model, [LAYER]).explain(x, classes).saliency
    assert torch.equal(results["model-output", "None"], by_class)


@pytest.mark.parametrize("explainer", list(EXPLAINERS))
def test_callable_targets_receive_the_output_unchanged(explainer: str, deit: nn.Module) -> None:
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(4)).double()
    seen: list[Any] = []

    def distillation_head(output: Any) -> torch.Tensor:
        seen.append(output)
        return output.distillation_logits[:, 1]

    model = Returning(deit, "model-output")
    EXPLAINERS[explainer](model, [LAYER]).explain(x, distillation_head)
    assert seen
    for output in seen:
        assert (
            type(output)
            is transformers.models.deit.modeling_deit.DeiTForImageClassificationWithTeacherOutput
        )
        assert output.logits.shape == output.distillation_logits.shape == (2, 3)


def test_an_output_without_logits_is_refused_naming_target(deit: nn.Module) -> None:
    x = torch.randn(2, 3, 16, 24).double()
    model = Returning(deit, "out")
    for target in (None, 1):
        with pytest.raises(normgrad.ArgumentTypeError, match=r"^target: .*keys \['out'\]"):
            normgrad.NormGrad(model, LAYER).explain(x, target)
    # a callable reads any output
    result = normgrad.NormGrad(model, LAYER).explain(x, lambda out: out["out"][:, 1])
    assert result.saliency.shape == (2, 1, 16, 24)


def test_deletion_insertion_reads_the_logits_by_the_same_rule(deit: nn.Module) -> None:
    """The one metric that runs the model reads its output as the explainers do."""
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(6)).double()
    saliency = torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(7))
    results = {
        form: normgrad.metrics.deletion_insertion(
            Returning(deit, form), x, saliency.double(), steps=4, target=None
        )
        for form in ("tensor", "model-output", "tuple", "dict")
    }
    for form, result in results.items():
        assert torch.equal(result.deletion, results["tensor"].deletion), form
        assert torch.equal(result.insertion, results["tensor"].insertion), form
    with pytest.raises(normgrad.ArgumentTypeError, match=r"^target: .*keys \['out'\]"):
        normgrad.metrics.deletion_insertion(Returning(deit, "out"), x, saliency.double())


def test_a_swin_block_is_left_as_it_was_after_an_error() -> None:
    """A block returning a tuple is hooked through its first tensor; after an error (a
    class out of range, read at the end of the call) no hook, flag or weight has changed."""
    config = transformers.SwinConfig(
        image_size=16, patch_size=2, embed_dim=8, depths=[1, 1], num_heads=[2, 2],
        window_size=2, num_labels=3,
    )  # fmt: skip
    model = _seeded(lambda: transformers.SwinForImageClassification(config))
    logits = Returning(model, "tensor")
    x = torch.randn(2, 3, 16, 16).double()
    before = snapshot(logits, x)
    with pytest.raises(normgrad.InvalidArgumentError, match=r"target: .*\[0, 3\)"):
        normgrad.NormGrad(model, "swin.encoder.layers.0.blocks.0").explain(x, [1, 7])
    assert_unchanged(before, snapshot(logits, x))


# --------------------------------------------------------------------------------------
# inputs of other sizes, presets
# --------------------------------------------------------------------------------------


class Interpolating(nn.Module):
    """A Hugging Face ViT called with ``interpolate_pos_encoding=True``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x, interpolate_pos_encoding=True)


@pytest.mark.parametrize("size", [(24, 40), (8, 56)])
def test_vit_at_other_sizes_through_a_wrapper(size: tuple[int, int]) -> None:
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, intermediate_size=32, num_labels=3, **SMALL
    )
    vit = _seeded(lambda: transformers.ViTForImageClassification(config))
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(5)).double()
    with pytest.raises(ValueError, match="doesn't match"):  # normgrad passes nothing
        normgrad.NormGrad(vit, "vit.layers.1.layernorm_before")(x)
    model = Interpolating(vit)
    grid = (size[0] // 4, size[1] // 4)
    name = "model.vit.layers.1.layernorm_before"
    target = torch.tensor([0, 2])
    pairs, _ = _reference(Built(model, size, {name: ("tokens", 1, grid)}), x, target)
    activation, gradient = pairs[name]
    ours = normgrad.NormGrad(model, name, "conv3x3").explain(x, target)
    assert ours.raw_layer_maps[name].shape == (2, 1, *grid)
    expected = reference_normgrad_map(activation, gradient, "conv", 3)
    torch.testing.assert_close(ours.raw_layer_maps[name], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("depth", "base"), [(4, "vit"), (5, "deit"), (4, "beit")])
def test_hf_vit_preset_names_real_layers(depth: int, base: str) -> None:
    kind = {
        "vit": (transformers.ViTConfig, transformers.ViTForImageClassification),
        "deit": (transformers.DeiTConfig, transformers.DeiTForImageClassification),
        "beit": (transformers.BeitConfig, transformers.BeitForImageClassification),
    }[base]
    config = kind[0](
        image_size=16,
        patch_size=4,
        hidden_size=16,
        num_hidden_layers=depth,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    model = _seeded(lambda: kind[1](config))
    preset = presets.hf_vit(depth, base)
    names = dict(model.named_modules())
    assert preset.single in names and all(n in names for n in preset.multi)
    x = torch.randn(1, 3, 16, 16).double()
    result = normgrad.NormGrad(model, preset.multi, "conv1x1").explain(x)
    assert all(m.shape == (1, 1, 4, 4) for m in result.raw_layer_maps.values())
    assert all(float(m.std()) > 0 for m in result.raw_layer_maps.values())


def test_hf_swin_preset_names_real_layers() -> None:
    depths = [1, 2, 2]
    config = transformers.SwinConfig(
        image_size=32,
        patch_size=2,
        embed_dim=8,
        depths=depths,
        num_heads=[2, 2, 2],
        window_size=2,
        num_labels=2,
    )
    model = _seeded(lambda: transformers.SwinForImageClassification(config))
    preset = presets.hf_swin(depths)
    names = dict(model.named_modules())
    assert preset.single in names and all(n in names for n in preset.multi)
    x = torch.randn(1, 3, 32, 32).double()
    result = normgrad.NormGrad(model, preset.multi, "conv1x1").explain(x)
    grids = [m.shape[2:] for m in result.raw_layer_maps.values()]
    assert grids == [(16, 16), (8, 8), (4, 4)]
    assert all(float(m.std()) > 0 for m in result.raw_layer_maps.values())
    with pytest.raises(normgrad.InvalidArgumentError, match="depths"):
        presets.hf_swin([2])
    with pytest.raises(normgrad.InvalidArgumentError, match="base"):
        presets.hf_vit(4, "vit.layers")


@requires_cuda
def test_cuda_maps_equal_the_cpu_maps(deit: nn.Module) -> None:
    """On a CUDA device the layout is read the same way and the maps follow the input."""
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(8)).double()
    on_cpu = normgrad.NormGrad(deit, "deit.layers.1.layernorm_before", "conv3x3").explain(x)
    model = _deit().cuda()
    on_cuda = normgrad.NormGrad(model, "deit.layers.1.layernorm_before", "conv3x3").explain(
        x.cuda()
    )
    assert on_cuda.saliency.device.type == "cuda"
    torch.testing.assert_close(on_cuda.saliency.cpu(), on_cpu.saliency, rtol=1e-7, atol=1e-9)
