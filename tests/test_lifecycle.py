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


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    """Equal up to ``tol`` of ``expected``'s largest magnitude (maps of any units)."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale)


# A J-th root of a product of maps turns the rounding of a pixel near zero, delta, into up
# to delta ** (1 / J): one float64 rounding (1e-16) at a pixel where a layer map is 0 in one
# run becomes 5e-6 after the cube root, and which pixel is the minimum can depend on the
# convolution algorithm (the batch size, the machine). Maps with a root are compared tightly
# where there is no root (layer maps, the fused product) and to this bound after it.
ROOT_TOL = 1e-4


@pytest.mark.parametrize("method", list(EXPLAINERS))
@pytest.mark.parametrize(("arch", "model", "layers", "size"), MODELS, ids=[m[0] for m in MODELS])
def test_batch_equals_samples_one_at_a_time(
    method: str, arch: str, model: nn.Module, layers: list[str], size: int
) -> None:
    """Compared in float64, and where rounding is not amplified: in float32 the convolution
    algorithms vary with the batch size and the machine, and a cube root magnified their
    rounding (1e-7) beyond 1e-5 on some machines (see ``ROOT_TOL``)."""
    model64 = deepcopy(model).double()
    explainer = EXPLAINERS[method](model64, layers)
    x = torch.randn(
        3, 3, size, size, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    target = torch.tensor([0, 4, 2])
    batch = explainer.explain(x, target)
    assert batch.saliency.shape == (3, 1, size, size) and batch.saliency.dtype == torch.float64
    assert bool(torch.isfinite(batch.saliency).all())
    assert batch.saliency.min() >= 0 and batch.saliency.max() <= 1
    singles = [explainer.explain(x[i : i + 1], int(target[i])) for i in range(3)]
    for name, raw in batch.raw_layer_maps.items():
        for i, single in enumerate(singles):
            _close(raw[i : i + 1], single.raw_layer_maps[name], 1e-9)
    for name, layer_map in batch.layer_maps.items():
        torch.testing.assert_close(
            layer_map, torch.cat([s.layer_maps[name] for s in singles]), rtol=1e-9, atol=1e-9
        )
    saliency = torch.cat([s.saliency for s in singles])
    fused = len(batch.layer_maps)
    if fused > 1:
        # the product of the layer maps, before its root
        torch.testing.assert_close(batch.saliency**fused, saliency**fused, rtol=1e-9, atol=1e-12)
    # SmoothGrad here averages three-layer NormGrad maps, each with its cube root
    rooted = fused > 1 or method == "smoothgrad"
    tol = ROOT_TOL if rooted else 1e-9
    torch.testing.assert_close(batch.saliency, saliency, rtol=tol, atol=tol)
    if batch.raw is not None:
        for i, single in enumerate(singles):
            assert single.raw is not None
            _close(batch.raw[i : i + 1], single.raw, tol)


def test_guided_backprop_leaves_plain_gradients_plain() -> None:
    # float64 and a tight tolerance, not bit equality: two identical float32 passes of
    # ResNet-18 on a busy multi-threaded CPU can differ in the last bits
    model = deepcopy(MODELS[1][1]).double()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = normgrad.Gradient(model).explain(x, 1).attribution
    with pytest.raises(normgrad.NormGradError):
        normgrad.GuidedBackprop(model)(x, target=99)
    guided = normgrad.GuidedBackprop(model).explain(x, 1).attribution
    assert torch._C._len_torch_function_stack() == 0
    after = normgrad.Gradient(model).explain(x, 1).attribution
    assert plain is not None and guided is not None and after is not None
    torch.testing.assert_close(after, plain, rtol=1e-12, atol=1e-15)
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
