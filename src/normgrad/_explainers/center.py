"""The centre map: a map that always points at the middle of the image."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_finite_input, check_input
from .._grid import squared_distances
from .._model.targets import ResolvedTarget
from .._transfer import to_device
from .base import Explainer, Explanation, build_explanation


class CenterMap(Explainer):
    """A saliency map that ignores the model and peaks at the image centre.

    Zhang et al. (2016) report this "centre" reference beside every Pointing Game score: a
    method that does not beat it has not shown that it localises anything. The map is
    ``1 - d^2 / max(d^2)`` with ``d`` the distance to the geometric centre
    ``((H - 1) / 2, (W - 1) / 2)``; for even sizes the four central pixels tie and the
    Pointing Game takes the first, ``(H / 2 - 1, W / 2 - 1)``. Volumes work the same way.

    Args:
        model: optional, ignored; accepted so the map can be built like the explainers.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        super().__init__(model if model is not None else nn.Identity())

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        # the target was resolved (so checked) like every explainer's, though unused
        check_input(x, finite=False)
        check_finite_input(x)  # read with the call's other checks
        spatial = x.shape[2:]
        center = torch.tensor([[(s - 1) / 2 for s in spatial]], dtype=torch.float64)
        dist2 = squared_distances(to_device(center, x.device), spatial)[0]
        peak = dist2.max().clamp_min(1e-12)
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        raw = (1 - dist2 / peak).to(dtype).expand(x.shape[0], 1, *spatial).contiguous()
        return build_explanation(spatial, None, raw=raw)

    def __repr__(self) -> str:
        return "CenterMap()"
