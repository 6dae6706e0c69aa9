"""Literal reference of SmoothGrad: each noisy copy of an image drawn from its own seed and
explained alone, then the copies' maps averaged."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .seeds import reference_image_key, reference_seed


def reference_smoothgrad(
    explain: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    seed: int,
    n_samples: int,
    noise_level: float,
) -> torch.Tensor:
    """SmoothGrad of one image ``(C, *spatial)``: copy ``k`` adds ``sigma`` times the
    float64 ``randn`` of a generator on the image's device seeded with splitmix64 of
    ``(seed, the image's key, k)``, ``sigma = noise_level * (max - min)`` of the image; each
    copy is explained alone (``explain`` of a batch of one gives its raw map ``(1, ...)``)
    and the ``n_samples`` maps are averaged."""
    sigma = noise_level * (float(image.max()) - float(image.min()))
    image_seed = reference_seed(seed, *reference_image_key(image.cpu()))
    maps = []
    for k in range(n_samples):
        gen = torch.Generator(device=image.device).manual_seed(reference_seed(image_seed, k))
        noise = torch.randn(image.shape, generator=gen, device=image.device, dtype=torch.float64)
        maps.append(explain((image + sigma * noise).unsqueeze(0)))
    return torch.stack(maps).mean(0)
