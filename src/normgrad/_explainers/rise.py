r"""RISE (Petsiuk et al., 2018): the score-weighted mean of random masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import (
    check_count,
    check_input,
    check_number,
    check_positive_int,
    check_sizes,
    fit_sizes,
)
from .._deferred import deferred_checks
from .._model.diagnosis import check_finite_scores
from .._model.per_class import classes_per_sample
from .._model.scoring import forward_scores
from .._model.targets import ResolvedTarget
from .base import Explainer, Explanation, build_explanation, per_class
from .perturbation import _chunks, _fix_target, noise_seeds


def grid_size(size: int, cell: int) -> int:
    r"""The cells of a mask's grid along an axis of ``size`` pixels: $\lceil S / c \rceil + 1$
    (one more than cover the axis, room for the shift)."""
    return -(-size // cell) + 1


def bilinear_rows(
    shifts: torch.Tensor, size: int, cell: int, cells: int, dtype: torch.dtype
) -> torch.Tensor:
    r"""The weights ``(*shifts.shape, size, cells)`` that read pixel $o$ of an axis from the
    grid's ``cells`` values, upsampled ``cell`` times by linear interpolation
    (``F.interpolate``, ``align_corners=False``: source $(o + \delta + 1/2) / c - 1/2$, at
    least 0, between the two nearest cells, the last repeated) and cropped from
    $\delta$ = ``shifts`` on."""
    out = torch.arange(size, device=shifts.device, dtype=dtype)
    source = ((out + shifts[..., None].to(dtype) + 0.5) / cell - 0.5).clamp(min=0)
    low = source.floor()
    weight = source - low
    low = low.long()
    high = (low + 1).clamp(max=cells - 1)
    rows = torch.zeros(*source.shape, cells, device=shifts.device, dtype=dtype)
    rows.scatter_add_(-1, low[..., None], (1 - weight)[..., None])
    return rows.scatter_add_(-1, high[..., None], weight[..., None])


def masks_from(
    grids: torch.Tensor, shifts: torch.Tensor, cell: Sequence[int], size: Sequence[int]
) -> torch.Tensor:
    """Masks ``(*lead, *size)`` from binary grids ``(*lead, *cells)`` and their shifts
    ``(*lead, ndim)``: each grid upsampled (bi/trilinearly) ``cell`` times and cropped to
    ``size`` from its shift; one product with ``bilinear_rows`` per axis."""
    ndim = len(size)
    lead = grids.shape[:-ndim]
    masks = grids
    for axis in range(ndim):
        rows = bilinear_rows(
            shifts[..., axis], size[axis], cell[axis], grids.shape[len(lead) + axis], grids.dtype
        )  # (*lead, size, cells)
        moved = masks.movedim(len(lead) + axis, -1)  # (*lead, ..., cells)
        flat = moved.reshape(*lead, -1, moved.shape[-1])
        read = flat @ rows.transpose(-1, -2)  # (*lead, rest, size)
        masks = read.reshape(*moved.shape[:-1], size[axis]).movedim(-1, len(lead) + axis)
    return masks


class RISE(Explainer):
    r"""RISE, Randomized Input Sampling for Explanation (Petsiuk et al., BMVC 2018).

    Each of ``n_masks`` masks $M_i$ is a random binary grid, each cell 1 with probability
    ``p``, of $\lceil S_d / c_d \rceil + 1$ cells along each axis (``cell_size`` $c$
    pixels each), upsampled $c$ times by (bi/tri)linear interpolation
    (``F.interpolate``, ``align_corners=False``) and cropped to the input's size from a
    random shift $\delta_d \in \{0, \dots, c_d - 1\}$, so its values lie in $[0, 1]$. The
    map is the score-weighted mean of the masks:

    $$
    \mathrm{RISE}(x)_u = \frac{1}{p \, n} \sum_{i=1}^{n} s(x \odot M_i) \, M_i(u)
    $$

    with $s$ the softmax probability of the target class, as in the paper (a single logit
    $z$: $\sigma(\pm z)$), or a callable target's score as it is. ``raw`` is this map
    ``(N, 1, *spatial)`` (non-negative for a class), the saliency its min-max
    normalisation.

    **The masks of an image depend on that image alone.** Image $j$'s grids and shifts are
    drawn by a generator on the input's device seeded by ``seed`` and a checksum of the
    image's values (as [`SmoothGrad`][normgrad.SmoothGrad]'s noise, read once per call).
    So an image gets the same map explained alone, in any batch, in any order, on any
    rank, and whatever ``batch_size``; the CPU and CUDA generators draw different
    masks.

    **Cost.** ``n_masks`` forward passes per image (plus one for the predicted class when
    ``target=None``), no gradient, ``batch_size`` inputs per model call (at least one whole
    copy of the batch), on the input's device with no read of the device in the loop;
    memory holds the grids (``n_masks`` small grids per image) and one call's masks.

    ``target=None`` means the class predicted for ``x``. A callable target is called on
    each copy's output of N samples, as for the caller's batch. A target of ``K`` classes
    per sample ``(N, K)`` scores every class from the same masked inputs: no more passes
    than one class.

    Args:
        model: the classifier.
        n_masks: the number of masks $n$ (the paper: 4000 for ResNet-50).
        cell_size: a grid cell's size in pixels, one int for every axis or one per axis
            (the paper: 224 px in 7 cells, 32).
        p: the probability that a cell is kept, in $(0, 1]$.
        batch_size: inputs per model call.
        seed: seed of the masks, an int >= 0.

    Examples:
        >>> import torch, torchvision, normgrad
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> rise = normgrad.RISE(model, n_masks=16, cell_size=8)
        >>> tuple(rise(torch.randn(1, 3, 32, 32)).shape)
        (1, 1, 32, 32)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        n_masks: int = 4000,
        cell_size: int | Sequence[int] = 32,
        p: float = 0.5,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(model)
        self.n_masks = check_positive_int(n_masks, "n_masks")
        self.cell_size = check_sizes(cell_size, "cell_size")
        self.p = check_number(p, "p", low=0, high=1, open_low=True)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_count(seed, "seed")

    def _draws(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's binary grids ``(N, n_masks, *cells)`` (float32, 0 or 1) and shifts
        ``(N, n_masks, ndim)``, drawn from the image's own seed."""
        spatial = x.shape[2:]
        cell = fit_sizes(self.cell_size, spatial, "cell_size")
        cells = [grid_size(s, c) for s, c in zip(spatial, cell)]
        gen = torch.Generator(device=x.device)
        grids, shifts = [], []
        for seed in noise_seeds(self.seed, x):
            gen.manual_seed(seed)
            uniform = torch.rand(self.n_masks, *cells, generator=gen, device=x.device)
            grids.append((uniform < self.p).float())
            shifts.append(
                torch.stack(
                    [
                        torch.randint(c, (self.n_masks,), generator=gen, device=x.device)
                        for c in cell
                    ],
                    dim=1,
                )
            )
        return torch.stack(grids), torch.stack(shifts)

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        check_input(x, finite=False)
        cell = fit_sizes(self.cell_size, x.shape[2:], "cell_size")  # before any pass
        with deferred_checks():  # every check of the call read once, at its end
            fixed = _fix_target(self.model, x, target)  # checks x's values
            return self._weigh(x.detach(), fixed, cell)

    def _weigh(self, x: torch.Tensor, fixed: ResolvedTarget, cell: list[int]) -> Explanation:
        """The masks' scores weigh the masks; ``K`` classes per sample are scored from the
        same passes, each class's map normalised on its own."""
        batch, spatial = x.shape[0], list(x.shape[2:])
        k = classes_per_sample(fixed)
        grids, shifts = self._draws(x)
        # the maps' dtype, as every map's: float32 for 16-bit inputs, else the input's
        dtype = torch.promote_types(x.dtype, torch.float32)
        total = x.new_zeros(batch, max(k, 1), *spatial, dtype=dtype)
        weights = x.new_zeros(batch, dtype=dtype)  # the sum of the scores, for the finite check
        classes: torch.Tensor | None = None
        for start, stop, repeated in _chunks(self.n_masks, batch, self.batch_size, fixed):
            grid = grids[:, start:stop].to(dtype)
            masks = masks_from(grid, shifts[:, start:stop], cell, spatial)  # (N, m, *S)
            masked = (x[:, None] * masks[:, :, None].to(x.dtype)).transpose(0, 1).flatten(0, 1)
            scores, found = forward_scores(self.model, masked, repeated, probability=True)
            # (m, N, K): each mask's score for each class, K = 1 for one class per sample
            scores = scores.view(stop - start, batch, -1).to(dtype)
            classes = found[:batch] if found is not None else None
            for j, column in enumerate(scores.unbind(dim=2)):  # a class as it is alone
                weighed = column.T.reshape(batch, -1, *[1] * len(spatial)) * masks
                total[:, j] += weighed.sum(dim=1)
                weights += column.sum(dim=0)
        check_finite_scores(self.model, x, weights)
        raw = (total / (self.p * self.n_masks)).reshape(batch * max(k, 1), 1, *spatial)
        explanation = build_explanation(spatial, classes, raw=raw)
        return per_class(explanation, k) if k else explanation

    def __repr__(self) -> str:
        name = type(self.model).__name__
        return (
            f"RISE({name}, n_masks={self.n_masks}, cell_size={self.cell_size}, p={self.p}, "
            f"seed={self.seed})"
        )
