"""Gaussian smoothing of saliency maps, as in the paper's protocol."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_kernel_size, check_sigma
from .._errors import ArgumentTypeError, ShapeError
from .._transfer import to_device
from ._maps import as_maps


def gaussian_kernel(
    sigma: float,
    kernel_size: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel of odd length ``kernel_size``."""
    check_sigma(sigma)
    check_kernel_size(kernel_size)
    x = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return to_device(kernel / kernel.sum(), device, dtype)


def smooth(saliency: torch.Tensor, sigma: float = 1.0, kernel_size: int = 11) -> torch.Tensor:
    """Gaussian smoothing of saliency maps, as in the paper (sigma 1, kernel 11, reflection).

    Separable convolution with a normalised Gaussian of ``kernel_size`` taps along every
    spatial dimension, with reflection padding (scipy's ``mode="mirror"``), on the maps'
    device. Values stay in the range of the input.

    Args:
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)``, 2-D or 3-D, floating point.
        sigma: standard deviation in pixels.
        kernel_size: odd number of taps; every spatial size must exceed ``kernel_size // 2``.

    Returns:
        Smoothed maps of the same shape and dtype.
    """
    maps = as_maps(saliency)
    if not maps.is_floating_point():
        raise ArgumentTypeError(f"saliency: expected floating point maps, got dtype {maps.dtype}")
    kernel = gaussian_kernel(sigma, kernel_size, maps.dtype, maps.device)
    spatial = maps.shape[1:]
    pad = kernel_size // 2
    if any(s <= pad for s in spatial):
        raise ShapeError(
            f"saliency: reflection padding of {pad} needs every spatial size > {pad} "
            f"(kernel_size {kernel_size}), got spatial shape {tuple(spatial)}",
            saliency.shape,
        )
    ndim = len(spatial)
    out = maps.reshape(-1, 1, *spatial)
    conv = F.conv2d if ndim == 2 else F.conv3d
    for axis in range(ndim):
        padding = [0, 0] * ndim
        # pad lists pads from the last dimension backwards
        padding[2 * (ndim - 1 - axis)] = pad
        padding[2 * (ndim - 1 - axis) + 1] = pad
        shape = [1, 1] + [1] * ndim
        shape[2 + axis] = kernel_size
        out = conv(F.pad(out, padding, mode="reflect"), kernel.view(shape))
    return out.view(saliency.shape)
