"""The fast kernels against the literal per-patch reference, over random shapes and dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from normgrad import InvalidArgumentError, ShapeError
from normgrad import functional as nf

from .conftest import requires_cuda
from .reference.maps import (
    reference_geometric_mean,
    reference_normalize,
    reference_normgrad_map,
    reference_saliency,
)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@st.composite
def activation_pairs(draw: st.DrawFn, max_ndim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    ndim = draw(st.integers(1, max_ndim))
    batch = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 5))
    max_side = {1: 9, 2: 6, 3: 4}[ndim]
    spatial = [draw(st.integers(1, max_side)) for _ in range(ndim)]
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, channels, *spatial)
    x = torch.randn(shape, generator=gen) * draw(st.sampled_from([1e-2, 1.0, 10.0]))
    if draw(st.booleans()):
        x = x.relu()  # post-ReLU activations have many exact zeros
    g = torch.randn(shape, generator=gen) * draw(st.sampled_from([1e-3, 1.0]))
    return x.to(dtype), g.to(dtype)


def assert_matches_reference(fast: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert fast.dtype == (torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
    assert fast.shape == ref.shape
    scale = ref.abs().max().item() + 1e-30
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(fast.double(), ref, rtol=tol, atol=tol * scale)


@given(activation_pairs())
def test_scaling_map_matches_reference(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, g = pair
    ref = reference_normgrad_map(x, g, "scaling")
    assert_matches_reference(nf.normgrad_map(x, g, "scaling"), ref, x.dtype)


@given(activation_pairs(), st.sampled_from([1, 3, 5, 7]))
def test_conv_map_matches_unfolded_outer_product(
    pair: tuple[torch.Tensor, torch.Tensor], kernel_size: int
) -> None:
    x, g = pair
    ref = reference_normgrad_map(x, g, "conv", kernel_size)
    vil = f"conv{kernel_size}x{kernel_size}"
    assert_matches_reference(nf.normgrad_map(x, g, vil), ref, x.dtype)


@given(activation_pairs(max_ndim=2), st.sampled_from([1, 3, 5]))
def test_patch_norm_equals_unfold_norm(pair: tuple[torch.Tensor, torch.Tensor], k: int) -> None:
    x, _ = pair
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    xd = x.double()
    n, _, h, w = xd.shape
    unfolded = F.unfold(xd, kernel_size=k, padding=k // 2)
    ref = unfolded.norm(dim=1).view(n, 1, h, w)
    assert_matches_reference(nf.patch_norm(x, k), ref, x.dtype)


def test_conv1x1_is_product_of_norms() -> None:
    x, g = (
        torch.randn(2, 4, 5, 5, dtype=torch.float64),
        torch.randn(2, 4, 5, 5, dtype=torch.float64),
    )
    expected = g.norm(dim=1, keepdim=True) * x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(nf.normgrad_map(x, g, "conv1x1"), expected)


def test_scaling_differs_from_conv1x1() -> None:
    # The two VILs are different maths; a kernel that mixed them up would pass the
    # product-of-norms test for one of them only.
    x = torch.tensor([[[[1.0]], [[0.0]]]])
    g = torch.tensor([[[[0.0]], [[1.0]]]])
    assert nf.normgrad_map(x, g, "scaling").item() == 0.0
    assert nf.normgrad_map(x, g, "conv1x1").item() == 1.0


@given(
    st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=4),
    st.integers(1, 3),
    st.sampled_from([(5, 5), (8, 6), (7,), (3, 4, 5)]),
)
def test_layer_maps_to_saliency_matches_reference(
    seeds: list[int], batch: int, size: tuple[int, ...]
) -> None:
    raw_maps = []
    for i, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)
        side = [max(1, s // (i + 1)) for s in size]
        raw_maps.append(torch.rand(batch, 1, *side, generator=gen, dtype=torch.float64) + 0.1)
    # random maps of at least 2 pixels are never constant
    raw_maps = [m for m in raw_maps if m[0].numel() > 1] or [
        torch.rand(batch, 1, *size, dtype=torch.float64)
    ]
    saliency, layer_maps, informative = nf.layer_maps_to_saliency(raw_maps, size)
    assert all(bool(i.all()) for i in informative)
    torch.testing.assert_close(saliency, reference_saliency(raw_maps, size))
    assert saliency.shape == (batch, 1, *size)
    assert len(layer_maps) == len(raw_maps)


def test_min_max_normalize_matches_reference() -> None:
    maps = torch.randn(4, 1, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(nf.min_max_normalize(maps), reference_normalize(maps))


def test_geometric_mean_matches_reference_and_is_not_the_plain_product() -> None:
    maps = [torch.rand(2, 1, 4, 4, dtype=torch.float64) for _ in range(3)]
    fused = nf.fuse_geometric_mean(maps)
    torch.testing.assert_close(fused, reference_geometric_mean(maps))
    product = maps[0] * maps[1] * maps[2]
    assert not torch.allclose(fused, product)


def test_constant_layer_is_neutral_in_fusion() -> None:
    informative_raw = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    constant_raw = torch.full((2, 1, 2, 2), 3.0, dtype=torch.float64)
    fused, layer_maps, informative = nf.layer_maps_to_saliency(
        [informative_raw, constant_raw], (8, 8)
    )
    alone, _, _ = nf.layer_maps_to_saliency([informative_raw], (8, 8))
    torch.testing.assert_close(fused, alone)
    assert not bool(informative[1].any())
    assert torch.equal(layer_maps[1], torch.zeros_like(layer_maps[1]))


def test_constant_only_for_one_sample() -> None:
    raw = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    other = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    other[1] = 0.5
    fused, _, informative = nf.layer_maps_to_saliency([raw, other], (3, 3))
    assert informative[1].tolist() == [True, False]
    torch.testing.assert_close(fused[1:], nf.min_max_normalize(raw[1:]))
    torch.testing.assert_close(
        fused[:1],
        reference_geometric_mean([nf.min_max_normalize(raw[:1]), nf.min_max_normalize(other[:1])]),
    )


def test_single_constant_map_is_all_zero() -> None:
    saliency, _, informative = nf.layer_maps_to_saliency([torch.ones(1, 1, 2, 2)], (6, 6))
    assert torch.equal(saliency, torch.zeros(1, 1, 6, 6))
    assert informative[0].tolist() == [False]


def test_rounding_noise_counts_as_constant_but_real_variation_does_not() -> None:
    base = torch.full((1, 1, 2, 2), 0.3)
    noisy = base + torch.tensor([0.0, 1.0, -1.0, 0.0]).view(1, 1, 2, 2) * 0.3 * 2**-22
    assert nf.is_constant(noisy).tolist() == [True]
    varied = base + torch.tensor([0.0, 1.0, -1.0, 0.0]).view(1, 1, 2, 2) * 1e-3
    assert nf.is_constant(varied).tolist() == [False]
    assert nf.is_constant(torch.zeros(1, 1, 2, 2)).tolist() == [True]


def test_zero_layer_does_not_reset_the_product() -> None:
    # The reference code resets its running product when a layer is all zero, silently
    # dropping the layers before it. Here an all-zero layer is constant, hence neutral.
    first = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    second = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    zeros = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    fused, _, _ = nf.layer_maps_to_saliency([first, zeros, second], (4, 4))
    expected, _, _ = nf.layer_maps_to_saliency([first, second], (4, 4))
    torch.testing.assert_close(fused, expected)


@pytest.mark.parametrize(
    ("name", "kernel"),
    [
        ("scaling", 1),
        ("conv1x1", 1),
        ("conv3x3", 3),
        ("CONV5x5", 5),
        ("conv3×3", 3),
        ("conv3x3x3", 3),
    ],
)
def test_parse_vil(name: str, kernel: int) -> None:
    assert nf.parse_vil(name).kernel_size == kernel


@pytest.mark.parametrize(
    "name", ["conv2x2", "conv3x5", "conv0x0", "gradcam", "conv3", "conv3x3x3x3"]
)
def test_parse_vil_rejects(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="vil"):
        nf.parse_vil(name)


def test_kernel_errors_name_the_argument() -> None:
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ShapeError, match="gradient: expected the shape"):
        nf.normgrad_map(x, torch.randn(1, 2, 3, 4), "conv1x1")
    with pytest.raises(ShapeError, match="activation: expected a tensor of shape"):
        nf.normgrad_map(torch.randn(2, 3), torch.randn(2, 3), "conv1x1")
    with pytest.raises(InvalidArgumentError, match="needs 3 spatial dimensions"):
        nf.normgrad_map(x, x, "conv3x3x3")
    with pytest.raises(InvalidArgumentError, match="floating point"):
        nf.normgrad_map(x.long(), x.long(), "scaling")
    with pytest.raises(InvalidArgumentError, match="kernel_size"):
        nf.patch_norm(x, 4)


def test_half_precision_does_not_overflow() -> None:
    x = torch.full((1, 64, 3, 3), 300.0, dtype=torch.float16)  # 300² · 64 · 9 ≫ 65504
    out = nf.normgrad_map(x, x, "conv3x3")
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_on_cuda_match_cpu(dtype: torch.dtype) -> None:
    x, g = torch.randn(2, 8, 9, 9).to(dtype), torch.randn(2, 8, 9, 9).to(dtype)
    for vil in ["scaling", "conv1x1", "conv3x3", "conv5x5"]:
        gpu = nf.normgrad_map(x.cuda(), g.cuda(), vil)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), nf.normgrad_map(x, g, vil), rtol=1e-4, atol=1e-5)
