"""What re-initialising means for each kind of parameter (sanity.reinitialize)."""

from __future__ import annotations

import math

import torch
from torch import nn

from normgrad import sanity


class Block(nn.Module):
    """A transformer-style block with every kind of parameter a model may hold."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.fc = nn.Linear(dim, 2 * dim)
        self.bn = nn.BatchNorm1d(dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))  # timm's LayerScale
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))  # ConvNeXt's
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 50, dim))
        self.relative_position_bias_table = nn.Parameter(torch.zeros(49, 4))
        self.rnn = nn.LSTM(dim, dim)
        self.normed = nn.utils.parametrizations.weight_norm(nn.Linear(dim, dim))


def _reinitialized() -> tuple[Block, Block]:
    trained = Block()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(3.0)  # trained values far from any initialisation
        trained.bn.running_mean.fill_(5.0)
    fresh = Block()
    fresh.load_state_dict(trained.state_dict())
    sanity.reinitialize(fresh, torch.Generator().manual_seed(0))
    return trained, fresh


def _near(value: float, expected: float, rel: float = 0.15) -> bool:
    return abs(value - expected) <= rel * expected


def test_weights_are_he_normal_and_biases_zero() -> None:
    _, m = _reinitialized()
    assert _near(float(m.conv.weight.detach().std()), math.sqrt(2 / (3 * 4 * 4)))
    assert _near(float(m.fc.weight.detach().std()), math.sqrt(2 / 64))
    assert _near(float(m.attn.in_proj_weight.detach().std()), math.sqrt(2 / 64))
    assert _near(float(m.rnn.weight_ih_l0.detach().std()), math.sqrt(2 / 64))
    direction = m.normed.parametrizations.weight.original1  # weight norm's direction
    assert _near(float(direction.detach().std()), math.sqrt(2 / 64))
    assert abs(float(m.conv.weight.detach().mean())) < 0.05
    for bias in (
        m.conv.bias,
        m.fc.bias,
        m.attn.in_proj_bias,
        m.attn.out_proj.bias,
        m.rnn.bias_ih_l0,
    ):
        assert bias is not None and torch.equal(bias, torch.zeros_like(bias))


def test_norms_are_reset_to_the_identity() -> None:
    _, m = _reinitialized()
    for norm in (m.norm, m.bn):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
    assert torch.equal(m.bn.running_mean, torch.zeros(64))
    assert torch.equal(m.bn.running_var, torch.ones(64))


def test_layer_scales_and_tokens_are_small_random_not_zero() -> None:
    trained, m = _reinitialized()
    for name in (
        "gamma",
        "layer_scale",
        "cls_token",
        "pos_embedding",
        "relative_position_bias_table",
    ):
        before, after = getattr(trained, name), getattr(m, name)
        assert not torch.equal(before, after), name
        assert bool((after != 0).all()), f"{name} was zeroed"
        assert _near(float(after.detach().std()), sanity.TOKEN_STD, rel=0.3), name
        assert abs(float(after.detach().mean())) < 0.02, name


def test_a_seed_gives_the_same_weights() -> None:
    _, a = _reinitialized()
    _, b = _reinitialized()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_fully_randomised_transformers_and_convnext_give_finite_outputs() -> None:
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer

    x = torch.randn(2, 3, 32, 32)
    for model in (  # the torchvision families, small
        ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=3),
        SwinTransformer([4, 4], 16, [1, 1], [1, 2], [2, 2], num_classes=3),
        VisionTransformer(
            32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3
        ),
    ):
        model.eval()
        full = sanity.randomize(model, "full", seed=0)
        with torch.no_grad():
            out = full(x)
        assert bool(torch.isfinite(out).all()), type(model).__name__
        assert not torch.allclose(out, model(x)), type(model).__name__
        scales = [p for n, p in full.named_parameters() if n.endswith("layer_scale")]
        assert all(bool((s != 0).all()) for s in scales)
