"""Explaining leaves the model exactly as it was, after a normal return and after an error."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy

import pytest
import torch
import torchvision
from torch import nn

import normgrad

from .explainers import EXPLAINERS
from .lifecycle import assert_unchanged, snapshot
from .models import TinyCNN, seeded
from .reference import reference_normalize


class FailingHead(nn.Module):
    """A model whose forward raises after the hooked layers ran."""

    def __init__(self) -> None:
        super().__init__()
        self.body = seeded(TinyCNN())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.body(x)
        raise RuntimeError("boom")


def _models() -> list[tuple[str, nn.Module, list[str], int]]:
    resnet = seeded(torchvision.models.resnet18(num_classes=5))
    return [
        ("tiny", seeded(TinyCNN()), ["bn1", "conv3"], 12),
        ("resnet18", resnet, ["layer1.0.bn1", "layer2.0", "layer4.1"], 64),
    ]


MODELS = _models()


def _prepare(model: nn.Module, train: bool) -> None:
    model.train(train)
    # A mixed state: one frozen parameter, one with a gradient already, one submodule
    # whose flag differs from its parent's.
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[1].grad = torch.full_like(params[1], 0.25)
    list(model.modules())[-1].train(not train)


def _cleanup(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    model.eval()


CALLS: dict[str, Callable[[normgrad.Explainer, torch.Tensor], object]] = {
    "normal": lambda e, x: e(x),
    "target-out-of-range": lambda e, x: e(x, target=99),
    "bad-callable": lambda e, x: e(x, target=lambda out: out),
    "nan-input": lambda e, x: e(x * float("nan")),
}


@pytest.mark.parametrize(("arch", "model", "layers", "size"), MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_model_left_unchanged(
    arch: str, model: nn.Module, layers: list[str], size: int, train: bool, call: str, method: str
) -> None:
    _prepare(model, train)
    try:
        probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        before = snapshot(model, probe)
        explainer = EXPLAINERS[method](model, layers)
        if call == "normal":
            CALLS[call](explainer, probe)
        else:
            with pytest.raises(normgrad.NormGradError):
                CALLS[call](explainer, probe)
        assert_unchanged(before, snapshot(model, probe))
        assert torch._C._len_torch_function_stack() == 0
    finally:
        _cleanup(model)


@pytest.mark.parametrize("method", list(EXPLAINERS))
@pytest.mark.parametrize(("arch", "model", "layers", "size"), MODELS, ids=[m[0] for m in MODELS])
def test_batch_equals_samples_one_at_a_time(
    method: str, arch: str, model: nn.Module, layers: list[str], size: int
) -> None:
    """Compared in float64. In float32 the convolution algorithms vary with the batch size
    and the machine, and the cube root of a three-layer product magnifies their rounding
    (about 1e-6 of a map's range) near zero: a pixel within about 1e-2 of its map's minimum
    moves by 1e-5, which failed on some machines. In float64 (rounding about 1e-15) a pixel
    would have to lie within about 1e-10 of the minimum to move by 1e-9."""
    model64 = deepcopy(model).double()
    explainer = EXPLAINERS[method](model64, layers)
    x = torch.randn(
        3, 3, size, size, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    target = torch.tensor([0, 4, 2])
    batch = explainer(x, target)
    assert batch.shape == (3, 1, size, size) and batch.dtype == torch.float64
    assert bool(torch.isfinite(batch).all()) and batch.min() >= 0 and batch.max() <= 1
    if method == "smoothgrad":
        # The noise of sample i depends on the batch it is drawn with, so rebuild the same
        # draws by hand: one generator seeded with ``seed``, one randn of the whole batch's
        # shape per noisy copy, sigma = noise_level * (max - min) of each sample. Explain
        # each noisy copy of the batch with the wrapped explainer, average its maps (``raw``,
        # or ``saliency`` for multi-layer NormGrad) and min-max normalise each sample.
        assert isinstance(explainer, normgrad.SmoothGrad)
        inner = explainer.explainer
        gen = torch.Generator().manual_seed(explainer.seed)
        sigma = torch.tensor(
            [explainer.noise_level * float(x[i].max() - x[i].min()) for i in range(3)],
            dtype=torch.float64,
        ).view(3, 1, 1, 1)
        maps = []
        for _ in range(explainer.n_samples):
            noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)
            result = inner.explain(x + sigma * noise, target)
            maps.append(result.raw if result.raw is not None else result.saliency)
        expected = reference_normalize(torch.stack(maps).mean(dim=0))
        torch.testing.assert_close(batch, expected, rtol=1e-9, atol=1e-9)
        return
    single = torch.cat([explainer(x[i : i + 1], int(target[i])) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-9, atol=1e-9)


def test_guided_backprop_leaves_plain_gradients_plain() -> None:
    model = MODELS[1][1]
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = normgrad.Gradient(model).explain(x, 1).attribution
    with pytest.raises(normgrad.NormGradError):
        normgrad.GuidedBackprop(model)(x, target=99)
    guided = normgrad.GuidedBackprop(model).explain(x, 1).attribution
    assert torch._C._len_torch_function_stack() == 0
    after = normgrad.Gradient(model).explain(x, 1).attribution
    assert plain is not None and guided is not None and after is not None
    assert torch.equal(plain, after)
    # guided gradients do differ from plain ones here, so a guided mode left active would
    # have changed ``after``
    assert not torch.allclose(guided, plain, rtol=1e-3, atol=1e-6)


def test_error_raised_inside_forward_leaves_model_unchanged() -> None:
    model = FailingHead()
    probe = torch.randn(1, 3, 8, 8)
    before_hooks = [len(m._forward_hooks) for m in model.modules()]
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        normgrad.NormGrad(model, "body.conv2", "scaling")(probe)
    assert [len(m._forward_hooks) for m in model.modules()] == before_hooks
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_error_raised_by_a_hook_leaves_model_unchanged() -> None:
    model = seeded(TinyCNN())
    probe = torch.randn(1, 3, 8, 8)
    before = snapshot(model, probe)
    with pytest.raises(normgrad.LayerError, match="'fc'"):
        normgrad.NormGrad(model, ["conv2", "fc"], "scaling")(probe)
    assert_unchanged(before, snapshot(model, probe))


def test_repeated_calls_do_not_accumulate_state() -> None:
    model = seeded(TinyCNN())
    probe = torch.randn(2, 3, 8, 8)
    explainer = normgrad.NormGrad(model, ["conv2", "conv3"], "conv1x1")
    first = explainer(probe)
    before = snapshot(model, probe)
    for _ in range(3):
        torch.testing.assert_close(explainer(probe), first)
    assert_unchanged(before, snapshot(model, probe))


def test_input_is_not_modified() -> None:
    model = seeded(TinyCNN())
    x = torch.randn(2, 3, 8, 8)
    copy = x.clone()
    normgrad.NormGrad(model, ["relu1", "conv3"], "scaling")(x)
    assert torch.equal(x, copy)
    assert not x.requires_grad


@pytest.mark.parametrize("method", list(EXPLAINERS))
@pytest.mark.parametrize(("arch", "model", "layers", "size"), MODELS, ids=[m[0] for m in MODELS])
def test_channels_last_input_gives_the_same_maps(
    method: str, arch: str, model: nn.Module, layers: list[str], size: int
) -> None:
    """The same values stored channels-last (NHWC, faster convolutions on many CPUs) give the
    same maps.

    Compared in float64: in float32 the other convolution kernels round differently, and a
    ReLU input that rounds across zero switches a gradient path on or off (ResNet-18 at
    64x64: one such pixel in ``layer1``, a local change of about 1% of the map's maximum).
    That is a property of the gradient, not of the memory format.
    """
    model64 = deepcopy(model).double()
    explainer = EXPLAINERS[method](model64, layers)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, size, size, generator=gen, dtype=torch.float64)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    assert not nhwc.is_contiguous()
    target = torch.tensor([1, 3])
    plain, other = explainer.explain(x, target), explainer.explain(nhwc, target)
    torch.testing.assert_close(other.saliency, plain.saliency, rtol=1e-7, atol=1e-9)
    assert plain.raw_layer_maps.keys() == other.raw_layer_maps.keys()
    for name, raw in plain.raw_layer_maps.items():
        torch.testing.assert_close(other.raw_layer_maps[name], raw, rtol=1e-9, atol=0)
    if plain.raw is not None:
        assert other.raw is not None
        torch.testing.assert_close(other.raw, plain.raw, rtol=1e-7, atol=1e-9)
