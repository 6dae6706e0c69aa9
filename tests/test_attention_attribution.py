"""Attention rollout and the gradient-weighted relevance of Chefer et al. (ICCV 2021).

Compared, in float64, with the literal references of ``tests/reference/attention.py``: an
eager re-implementation of each block's attention, head by head, from the model's
weights (its ``A_h`` in the graph, so ``dS/dA_h`` is autograd's own), then rollout and
relevance entry by entry. On torchvision, timm and Hugging Face ViTs of drawn sizes, with
class, distillation and register tokens; plus the lifecycle (the model left unchanged, also
on error), the errors, the fused kernels and a batch against its samples one at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import timm
import torch
import transformers
from hypothesis import given
from hypothesis import strategies as st
from timm.models.deit import VisionTransformerDistilled
from torch import nn
from torchvision.models import VisionTransformer

import normgrad
from normgrad import functional as nf
from normgrad._model.attention import capture_attention
from normgrad._model.targets import resolve_target

from .conftest import examples, requires_cuda
from .lifecycle import assert_unchanged, snapshot
from .models import TinyCNN
from .reference.attention import (
    class_row_map,
    eager_attentions,
    reference_relevance,
    reference_rollout,
    upsampled,
)

FAMILIES = ("torchvision", "timm", "timm-distilled", "hf-vit", "hf-deit", "hf-registers")


def _hf(family: str, size: int, patch: int, layers: int, heads: int, width: int, extra: int):
    common = dict(
        image_size=size,
        patch_size=patch,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        hidden_size=heads * width,
        intermediate_size=2 * heads * width,
        num_labels=3,
    )
    if family == "hf-deit":
        return transformers.DeiTForImageClassificationWithTeacher(transformers.DeiTConfig(**common))
    if family == "hf-registers":
        config = transformers.Dinov2WithRegistersConfig(num_register_tokens=extra, **common)
        return transformers.Dinov2WithRegistersForImageClassification(config)
    return transformers.ViTForImageClassification(transformers.ViTConfig(**common))


def build(
    family: str,
    *,
    grid: int = 4,
    patch: int = 8,
    layers: int = 2,
    heads: int = 2,
    width: int = 8,
    extra: int = 0,
    norms: bool = False,
    seed: int = 0,
) -> tuple[nn.Module, int]:
    """A small ViT of ``family`` and its number of prefix tokens (float64, eval)."""
    torch.manual_seed(seed)
    size, dim = grid * patch, heads * width
    prefix = 1
    if family == "torchvision":
        model: nn.Module = VisionTransformer(
            image_size=size,
            patch_size=patch,
            num_layers=layers,
            num_heads=heads,
            hidden_dim=dim,
            mlp_dim=2 * dim,
            num_classes=3,
        )
        nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts it at zero
    elif family.startswith("timm"):
        kind = (
            VisionTransformerDistilled
            if family == "timm-distilled"
            else timm.models.VisionTransformer
        )
        model = kind(
            img_size=size,
            patch_size=patch,
            embed_dim=dim,
            depth=layers,
            num_heads=heads,
            num_classes=3,
            reg_tokens=0 if family == "timm-distilled" else extra,
            qk_norm=norms,
            scale_attn_norm=norms,
        )
        prefix = 2 if family == "timm-distilled" else 1 + extra
    else:
        model = _hf(family, size, patch, layers, heads, width, extra)
        prefix = {"hf-deit": 2, "hf-registers": 1 + extra}.get(family, 1)
    return model.double().eval(), prefix


def _classes(model: nn.Module, x: torch.Tensor, target: int | None) -> list[int]:
    with torch.no_grad():
        out = model(x)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return [target] * len(x) if target is not None else logits.argmax(1).tolist()


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-8, atol=1e-11)


sizes = st.fixed_dictionaries(
    {
        "grid": st.integers(2, 4),
        "patch": st.sampled_from([1, 2, 4]),
        "layers": st.integers(1, 3),
        "heads": st.integers(1, 3),
        "width": st.sampled_from([2, 4]),
        "extra": st.integers(0, 3),
        "norms": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


@pytest.mark.parametrize("family", FAMILIES)
@given(sizes, st.integers(1, 2), st.sampled_from([None, 0, 2]))
@examples(5)
def test_attentions_and_gradients_equal_the_eager_reference(
    family: str, sizes: dict[str, int], batch: int, target: int | None
) -> None:
    model, prefix = build(family, **sizes)
    side = sizes["grid"] * sizes["patch"]
    x = torch.randn(batch, 3, side, side, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a zero gradient is said; here it is compared
        found = capture_attention(model, x, resolve_target(target), method="test", gradients=True)
    attentions, gradients = eager_attentions(model, x, _classes(model, x, target))
    assert found.tokens.prefix == prefix and found.tokens.grid == (sizes["grid"],) * 2
    assert found.gradients is not None and len(found.attentions) == sizes["layers"]
    for block, (a, g) in enumerate(zip(found.attentions, found.gradients)):
        for h in range(sizes["heads"]):
            _close(a[:, h], attentions[block][h])
            _close(g[:, h], gradients[block][h])


def _explain(
    explainer: normgrad.Explainer, x: torch.Tensor, target: int | None
) -> normgrad.Explanation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer.explain(x, target)


@pytest.mark.parametrize("family", FAMILIES)
@given(
    sizes,
    st.integers(1, 2),
    st.sampled_from(nf.HEAD_FUSIONS),
    st.sampled_from([0.0, 0.1, 0.5, 0.9]),
)
@examples(5)
def test_rollout_equals_the_literal_rollout(
    family: str, sizes: dict[str, int], batch: int, head_fusion: str, discard_ratio: float
) -> None:
    model, prefix = build(family, **sizes)
    side = sizes["grid"] * sizes["patch"]
    x = torch.randn(batch, 3, side, side, dtype=torch.float64)
    explainer = normgrad.AttentionRollout(
        model, head_fusion=head_fusion, discard_ratio=discard_ratio
    )
    result = _explain(explainer, x, None)
    attentions, _ = eager_attentions(model, x, _classes(model, x, None))
    grid = (sizes["grid"],) * 2
    for n in range(batch):
        rollout = reference_rollout(attentions, n, head_fusion, discard_ratio)
        assert result.raw is not None
        _close(result.raw[n : n + 1], upsampled(class_row_map(rollout, prefix, grid), (side,) * 2))


@pytest.mark.parametrize("family", FAMILIES)
@given(sizes, st.integers(1, 2), st.sampled_from([None, 1]))
@examples(5)
def test_transformer_attribution_equals_the_literal_relevance(
    family: str, sizes: dict[str, int], batch: int, target: int | None
) -> None:
    model, prefix = build(family, **sizes)
    side = sizes["grid"] * sizes["patch"]
    x = torch.randn(batch, 3, side, side, dtype=torch.float64)
    result = _explain(normgrad.TransformerAttribution(model), x, target)
    classes = _classes(model, x, target)
    attentions, gradients = eager_attentions(model, x, classes)
    assert result.classes is not None and result.classes.tolist() == classes
    grid = (sizes["grid"],) * 2
    for n in range(batch):
        relevance = reference_relevance(attentions, gradients, n)
        assert result.raw is not None
        _close(
            result.raw[n : n + 1], upsampled(class_row_map(relevance, prefix, grid), (side,) * 2)
        )


@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(2, 6),
    st.sampled_from(nf.HEAD_FUSIONS),
    st.sampled_from([0.0, 0.3, 0.7, 0.95]),
    st.integers(0, 2**16),
)
@examples(20)
def test_functional_rollout_breaks_ties_by_position(
    blocks: int, heads: int, tokens: int, head_fusion: str, ratio: float, seed: int
) -> None:
    # few distinct values: many ties among the entries ranked for discarding
    g = torch.Generator().manual_seed(seed)
    attentions = [
        torch.randint(1, 4, (2, heads, tokens, tokens), generator=g).double() / 4
        for _ in range(blocks)
    ]
    per_block = [[a[:, h] for h in range(heads)] for a in attentions]
    rollout = nf.attention_rollout(attentions, head_fusion, ratio)
    for n in range(2):
        expected = reference_rollout(per_block, n, head_fusion, ratio)
        _close(rollout[n], torch.tensor(expected, dtype=torch.float64))


def test_the_brief_configurations_run_on_every_family() -> None:
    # torchvision vit_b_16-style, built small; timm vit_tiny_patch16_224; Hugging Face
    x = torch.randn(2, 3, 32, 32)
    tv = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    nn.init.normal_(tv.heads.head.weight, std=0.02)
    tm = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2
    )
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        hidden_size=16,
        intermediate_size=32,
    )
    hf = transformers.ViTForImageClassification(config)
    for model in (tv, tm, hf):
        for method in (normgrad.AttentionRollout, normgrad.TransformerAttribution):
            saliency = method(model)(x)
            assert saliency.shape == (2, 1, 32, 32)
            assert torch.isfinite(saliency).all() and 0 <= saliency.min() <= saliency.max() <= 1
            assert saliency.flatten(1).max(1).values.eq(1).all()  # not a constant map


class Logits(nn.Module):
    """A Hugging Face classifier's logits as its output (what the snapshots compare)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["rollout", "attribution"])
def test_model_left_unchanged_also_on_error(family: str, method: str) -> None:
    model, _ = build(family, norms=True)
    model = Logits(model) if family.startswith("hf") else model
    model.train()  # modes are restored
    probe = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    make: Callable[[nn.Module], normgrad.Explainer] = (
        normgrad.AttentionRollout if method == "rollout" else normgrad.TransformerAttribution
    )
    before = snapshot(model, probe)
    _explain(make(model), torch.randn(2, 3, 32, 32, dtype=torch.float64), 1)
    assert_unchanged(before, snapshot(model, probe))

    def failing(output: object) -> torch.Tensor:
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        make(model)(torch.randn(2, 3, 32, 32, dtype=torch.float64), failing)
    assert_unchanged(before, snapshot(model, probe))
    with pytest.raises(normgrad.InvalidArgumentError):
        make(model)(torch.randn(2, 3, 32, 32, dtype=torch.float64), 7)  # 3 classes
    assert_unchanged(before, snapshot(model, probe))


def test_a_model_without_recognised_attention_is_refused_naming_model() -> None:
    for method in (normgrad.AttentionRollout, normgrad.TransformerAttribution):
        with pytest.raises(normgrad.UnsupportedModelError, match=r"^model: .*no attention"):
            method(TinyCNN())
    no_class = timm.models.VisionTransformer(
        img_size=16,
        patch_size=8,
        embed_dim=8,
        depth=1,
        num_heads=2,
        class_token=False,
        global_pool="avg",
    )
    with pytest.raises(normgrad.UnsupportedModelError, match="class token"):
        normgrad.AttentionRollout(no_class)
    # rotary position embeddings act on q and k after the hooked submodules: not read
    eva = timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=28)
    with pytest.raises(normgrad.UnsupportedModelError, match="no attention block"):
        normgrad.TransformerAttribution(eva)


@pytest.mark.parametrize("family", ["torchvision", "timm"])
def test_a_block_computing_something_else_is_refused(family: str) -> None:
    model, _ = build(family)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    if family == "timm":
        model.blocks[1].attn.scale = 1.0  # read by normgrad, not by the fused kernel
    else:
        model = TokenFirstViT().double().eval()
        x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
        model.blocks.layers[0].self_attn.head_dim = 1  # another scale
    with pytest.raises(normgrad.UnsupportedModelError, match="does not compute softmax"):
        normgrad.AttentionRollout(model, layout=normgrad.Tokens(prefix=1))(x, 0)
    before = snapshot(model, x)
    with pytest.raises(normgrad.UnsupportedModelError):
        normgrad.TransformerAttribution(model, layout=normgrad.Tokens(prefix=1))(x, 0)
    assert_unchanged(before, snapshot(model, x))


def test_a_stated_scale_is_read() -> None:
    model, prefix = build("hf-vit")
    model.vit.layers[0].attention.scaling = 1.0  # what the model's kernel uses too
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    result = _explain(normgrad.TransformerAttribution(model), x, 0)
    attentions, gradients = eager_attentions(model, x, [0])
    expected = class_row_map(reference_relevance(attentions, gradients, 0), prefix, (4, 4))
    assert result.raw is not None
    _close(result.raw, upsampled(expected, (32, 32)))


def test_arguments_are_checked() -> None:
    model, _ = build("torchvision")
    with pytest.raises(normgrad.InvalidArgumentError, match="head_fusion"):
        normgrad.AttentionRollout(model, head_fusion="sum")
    with pytest.raises(normgrad.InvalidArgumentError, match="discard_ratio"):
        normgrad.AttentionRollout(model, discard_ratio=1.0)
    with pytest.raises(normgrad.LayerError, match="layout"):
        normgrad.AttentionRollout(model, layout="nhwc")
    with pytest.raises(normgrad.LayerError, match="prefix"):
        normgrad.AttentionRollout(model, layout=normgrad.Tokens(prefix=0))(
            torch.randn(1, 3, 32, 32).double()
        )


@pytest.mark.parametrize("method", [normgrad.AttentionRollout, normgrad.TransformerAttribution])
def test_fused_and_eager_kernels_give_the_same_maps(method: type[normgrad.Explainer]) -> None:
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    model, _ = build("timm", extra=2)
    fused = method(model).explain(x, 0).raw
    for block in model.blocks:
        block.attn.fused_attn = False
    eager = method(model).explain(x, 0).raw
    assert fused is not None and eager is not None
    _close(fused, eager)
    hf, _ = build("hf-vit")
    hf.config._attn_implementation = "sdpa"
    sdpa = method(hf).explain(x, 0).raw
    hf.config._attn_implementation = "eager"
    eager = method(hf).explain(x, 0).raw
    assert sdpa is not None and eager is not None
    _close(sdpa, eager)


class TokenFirstViT(nn.Module):
    """A hand-written ViT whose attention is sequence-first (batch_first=False)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=False)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).permute(2, 0, 1)  # (T, N, C)
        tokens = torch.cat([self.cls.expand(1, len(x), -1), tokens])
        return self.head(self.blocks(tokens)[0])


def test_sequence_first_multihead_attention_and_a_stated_layout() -> None:
    torch.manual_seed(0)
    model = TokenFirstViT().double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    layout = normgrad.Tokens(prefix=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the gradient's samples are read along N, not T
        result = normgrad.TransformerAttribution(model, layout=layout).explain(x, 2)
    attentions, gradients = eager_attentions(model, x, [2, 2])
    for n in range(2):
        expected = class_row_map(reference_relevance(attentions, gradients, n), 1, (3, 3))
        assert result.raw is not None
        _close(result.raw[n : n + 1], upsampled(expected, (12, 12)))


@pytest.mark.parametrize("family", ["torchvision", "timm", "hf-registers"])
def test_a_batch_equals_its_samples_one_at_a_time(family: str) -> None:
    model, _ = build(family, extra=1)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    for method in (normgrad.AttentionRollout, normgrad.TransformerAttribution):
        together = method(model).explain(x).raw
        alone = torch.cat([method(model).explain(x[i : i + 1]).raw for i in range(3)])
        assert together is not None
        _close(together, alone)


def test_several_classes_per_sample_equal_separate_calls() -> None:
    model, _ = build("torchvision")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    classes = torch.tensor([[0, 2], [1, 0]])
    for method in (normgrad.AttentionRollout, normgrad.TransformerAttribution):
        both = method(model).explain(x, classes)
        assert both.saliency.shape == (2, 2, 32, 32)
        for k in range(2):
            one = method(model).explain(x, classes[:, k])
            _close(both.saliency[:, k : k + 1], one.saliency)


@requires_cuda
def test_runs_on_cuda_and_agrees_with_the_cpu() -> None:
    model, _ = build("timm", extra=1)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for method in (normgrad.AttentionRollout, normgrad.TransformerAttribution):
        cpu = method(model).explain(x, 0).raw
        gpu = method(model.cuda()).explain(x.cuda(), 0).raw
        model.cpu()
        assert cpu is not None and gpu is not None and gpu.device.type == "cuda"
        _close(gpu.cpu(), cpu)


def test_explain_shared_and_smoothgrad_serve_the_attention_methods() -> None:
    model, _ = build("timm", extra=1)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    explainers = [
        normgrad.AttentionRollout(model, discard_ratio=0.2),
        normgrad.TransformerAttribution(model),
        normgrad.NormGrad(model, "blocks.1.norm1", "conv1x1"),
    ]
    shared = normgrad.explain_shared(explainers, x, 1)
    for explainer, together in zip(explainers, shared):
        _close(together.saliency, explainer.explain(x, 1).saliency)
    smooth = normgrad.SmoothGrad(explainers[1], n_samples=2, noise_level=0.0)
    _close(smooth(x, 1), explainers[1](x, 1))
