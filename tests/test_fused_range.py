"""The range of a saliency map, as the docs state it: one layer spans exactly [0, 1]; the
multi-layer NormGrad map (the paper's geometric mean, not renormalised) has minimum 0 and
maximum 1 only where every layer peaks at the same pixel."""

from __future__ import annotations

import pytest
import torch

import normgrad
from normgrad import functional as nf

from .models import TinyCNN, seeded


def test_the_fused_map_is_the_geometric_mean_with_its_own_maximum() -> None:
    model = seeded(TinyCNN()).double().eval()
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    layers = ["conv1", "conv2"]
    result = normgrad.NormGrad(model, layers, "conv3x3").explain(x)
    maps = [result.layer_maps[name] for name in layers]
    for m in maps:  # each layer's map spans exactly [0, 1]
        assert m.flatten(1).amin(1).tolist() == [0.0] * 4
        assert m.flatten(1).amax(1).tolist() == [1.0] * 4
    # the fused map: the geometric mean, not divided by its maximum
    reference = (maps[0] * maps[1]).sqrt()
    torch.testing.assert_close(result.saliency, reference, rtol=1e-12, atol=1e-15)
    top = result.saliency.flatten(1).amax(1)
    assert result.saliency.flatten(1).amin(1).tolist() == [0.0] * 4
    assert bool((top <= 1).all())
    # where the layers peak apart, the maximum is below 1
    apart = (maps[0].flatten(1).argmax(1) != maps[1].flatten(1).argmax(1)) & (
        (maps[0] * maps[1]).flatten(1).amax(1) < 1
    )
    assert bool(apart.any())
    assert bool((top[apart] < 1).all())


def test_layers_peaking_together_fuse_to_one() -> None:
    a = torch.zeros(2, 1, 5, 5, dtype=torch.float64)
    b = torch.zeros_like(a)
    a[:, 0, 2, 2] = 1.0  # a peaks at (2, 2) in both samples
    b[0, 0, 2, 2] = 1.0  # sample 0: b peaks there too
    b[1, 0, 2, 2], b[1, 0, 3, 3] = 0.5, 1.0  # sample 1: b peaks at (3, 3)
    fused = nf.fuse_geometric_mean([a, b])
    assert fused[0].amax().item() == 1.0
    assert fused[1].amax().item() == pytest.approx(0.5**0.5, rel=1e-12)  # sqrt(1 * 0.5)
