r"""Methods that average over perturbed inputs: SmoothGrad and Integrated Gradients."""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import torch

from .._checks import (
    check_count,
    check_finite_input,
    check_finite_tensor,
    check_input,
    check_number,
    check_positive_int,
)
from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, ShapeError, describe
from .._model.capture import capture, predicted_classes
from .._model.per_class import classes_per_sample
from .._model.targets import (
    ClassTarget,
    Lengths,
    ResolvedTarget,
    ScoreTarget,
    check_class_shape,
)
from .._transfer import to_device
from ..functional import quadrature, reduce_channels
from .base import Explainer, Explanation, build_explanation, explain_resolved, per_class


def _fix_target(model: torch.nn.Module, x: torch.Tensor, target: ResolvedTarget) -> ResolvedTarget:
    """The resolved ``target`` for perturbed copies of ``x``: ``None``'s classes become the
    class predicted for ``x`` itself (one forward pass without a graph), so every copy is
    explained for the same class. Class indices and score functions are used as they are."""
    check_input(x, finite=False)
    check_finite_input(x)  # read with the call's other checks
    if isinstance(target, ClassTarget):
        check_class_shape(target, x.shape[0])  # before it is repeated for the copies
        if target.classes is None:
            return ClassTarget(predicted_classes(model, x))
    return target


def _chunks(
    total: int, batch: int, per_chunk: int, target: ResolvedTarget
) -> Iterator[tuple[int, int, ResolvedTarget]]:
    """Split ``total`` copies of a batch of ``batch`` samples into runs of whole copies,
    each with ``target`` repeated for its copies.

    A callable target is called on each copy's part of the output; which of the output's
    tensors are per sample is read from the batch alone: the first copy runs alone, and
    the lengths of the tensors it outputs are the batch's (``targets._split``). So a table
    of fixed length returned beside the logits is never cut, whatever its length."""
    copies = max(1, per_chunk // batch)
    seen: Lengths | None = {} if isinstance(target, ScoreTarget) and copies > 1 else None
    bounds = [0, 1] if seen is not None and total > 1 else [0]
    bounds += [*range(bounds[-1] + copies, total, copies), total]
    for start, stop in zip(bounds, bounds[1:]):
        yield start, stop, target.repeat(stop - start, batch, seen)


_MASK64 = (1 << 64) - 1
_INT_VIEWS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_ADLER = 65521  # the largest prime below 2**16: positions weigh 1 .. 65521


def _mix(*values: int) -> int:
    """One 64-bit seed from integers: splitmix64's finaliser applied after each value."""
    state = 0
    for value in values:
        state = (state + (value & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        state = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & _MASK64
        state ^= state >> 31
    return state


_KEY_BLOCK = 2**22  # values of the batch read per step of ``image_keys`` (bounds its memory)


def image_keys(x: torch.Tensor) -> list[tuple[int, int, int]]:
    r"""A key per sample of ``x`` ``(N, ...)`` that depends on that sample's values alone.

    The values' bit patterns, in logical order (a channels-last tensor gives the keys of its
    contiguous copy), are cut into 16-bit pieces $p_j$; the key is
    $(L, \sum_j p_j, \sum_j p_j \, (1 + j \bmod 65521))$ with $L$ the number of pieces.
    The sums are exact int64 sums on the input's device (for samples up to 500 million
    values), so they do not depend on the order of the reduction, the other samples or the
    device; they are taken a block of values at a time (about 100 MB of integers at most),
    and the one read to the host is the ``(N, 2)`` result.
    """
    flat = x.detach().reshape(x.shape[0], -1)
    size = flat.element_size()
    shifts = range(0, 8 * size, 16)
    count = flat.shape[1]
    plain = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    weighted = torch.zeros_like(plain)
    step = max(1, _KEY_BLOCK // x.shape[0])
    for start in range(0, count, step):
        bits = flat[:, start : start + step].view(_INT_VIEWS[size]).to(torch.int64)
        position = torch.arange(start, start + bits.shape[1], device=x.device) * len(shifts)
        for k, shift in enumerate(shifts):
            piece = (bits >> shift) & 0xFFFF
            plain += piece.sum(dim=1)
            weighted += (piece * (1 + (position + k) % _ADLER)).sum(dim=1)
    sums = torch.stack([plain, weighted], dim=1).tolist()
    return [(count * len(shifts), int(a), int(b)) for a, b in sums]


def noise_seeds(seed: int, x: torch.Tensor) -> list[int]:
    """The seed of each sample's noise: ``seed`` mixed with the sample's key
    (``image_keys``). Copy ``k`` of sample ``i`` draws from ``_mix(seeds[i], k)``."""
    return [_mix(seed, *key) for key in image_keys(x)]


class SmoothGrad(Explainer):
    r"""SmoothGrad (Smilkov et al., 2017) around any explainer.

    Averages the wrapped explainer's map over ``n_samples`` noisy copies of the input,
    $x + \epsilon$, $\epsilon \sim \mathcal{N}(0, \sigma^2)$, with
    $\sigma = \mathrm{noise\_level} \cdot (\max x - \min x)$ per sample, then min-max
    normalises. The averaged map is the explainer's ``raw`` map (non-negative for every
    normgrad method) where it has one, else its ``saliency`` (multi-layer NormGrad).

    Every noisy copy is explained for the same class: ``target=None`` means the class the
    model predicts for the clean input. Copies are explained ``batch_size`` samples at a
    time (at least one whole copy of the batch), so memory does not grow with
    ``n_samples``; the result does not depend on ``batch_size``.

    **The noise of an image depends on that image alone.** Copy ``k`` of a sample draws
    its noise from a generator on the input's device seeded by ``seed``, a checksum of the
    sample's values (computed on the device, read once per call) and ``k``. So a sample
    gets the same map explained alone, in any batch, in any order and on any rank; two
    equal images get the same noise. The CPU and CUDA generators draw different numbers, so
    the noise (not its distribution) differs between device types.

    Args:
        explainer: any normgrad explainer.
        n_samples: number of noisy copies.
        noise_level: noise standard deviation as a fraction of each sample's value range.
        batch_size: samples per forward/backward pass.
        seed: seed of the noise, an int >= 0.

    A callable target is called on each noisy copy's output of N samples, as for the
    caller's batch.
    """

    def __init__(
        self,
        explainer: Explainer,
        n_samples: int = 25,
        noise_level: float = 0.15,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        if not isinstance(explainer, Explainer):
            raise ArgumentTypeError(
                f"explainer: expected a normgrad explainer, got {describe(explainer)}"
            )
        super().__init__(explainer.model)
        self.explainer = explainer
        self.n_samples = check_positive_int(n_samples, "n_samples")
        self.noise_level = check_number(noise_level, "noise_level", low=0)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_count(seed, "seed")

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        with deferred_checks():  # every check of the call read once, at its end
            return self._smooth(x, _fix_target(self.model, x, target))

    def _smooth(self, x: torch.Tensor, fixed: ResolvedTarget) -> Explanation:
        batch = x.shape[0]
        classes: torch.Tensor | None = None
        flat = x.detach().flatten(1)
        spread = (flat.amax(dim=1) - flat.amin(dim=1)).view(-1, *([1] * (x.ndim - 1)))
        sigma = self.noise_level * spread
        seeds = noise_seeds(self.seed, x)
        gen = torch.Generator(device=x.device)

        def noise(copy: int) -> torch.Tensor:
            return torch.stack(
                [
                    torch.randn(
                        x.shape[1:],
                        generator=gen.manual_seed(_mix(seed, copy)),
                        device=x.device,
                        dtype=x.dtype,
                    )
                    for seed in seeds
                ]
            )

        total: torch.Tensor | None = None
        for start, stop, repeated in _chunks(self.n_samples, batch, self.batch_size, fixed):
            noisy = torch.cat([x.detach() + sigma * noise(k) for k in range(start, stop)])
            result = explain_resolved(self.explainer, noisy, repeated)
            if result.classes is not None:
                classes = result.classes[:batch]
            maps = result.raw if result.raw is not None else result.saliency
            summed = maps.view(stop - start, batch, *maps.shape[1:]).sum(dim=0)
            total = summed if total is None else total + summed
        assert total is not None
        k = classes_per_sample(fixed)  # maps (N, K, *spatial): normalised per class
        raw = total.flatten(0, 1).unsqueeze(1) if k else total
        explanation = build_explanation(x.shape[2:], classes, raw=raw / self.n_samples)
        return per_class(explanation, k) if k else explanation

    def __repr__(self) -> str:
        return (
            f"SmoothGrad({self.explainer!r}, n_samples={self.n_samples}, "
            f"noise_level={self.noise_level}, seed={self.seed})"
        )


def baseline_like(baseline: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The input a removed pixel takes, broadcastable to ``x``: a number, or a tensor
    broadcastable to the input (refused otherwise, naming ``baseline``)."""
    if not isinstance(baseline, torch.Tensor):
        return x.new_full((1,) * x.ndim, baseline)
    try:
        return torch.broadcast_to(to_device(baseline, x.device, x.dtype), x.shape)
    except RuntimeError:
        raise ShapeError(
            f"baseline: expected a tensor broadcastable to the input shape "
            f"{tuple(x.shape)}, got shape {tuple(baseline.shape)}",
            baseline.shape,
        ) from None


class IntegratedGradients(Explainer):
    r"""Integrated Gradients (Sundararajan et al., 2017), reduced by $\sum_c |\cdot|$.

    $$
    \mathrm{IG}(x) = (x - x') \odot \int_0^1
    \frac{\partial s(x' + \alpha (x - x'))}{\partial x} \, d\alpha
    $$

    with baseline $x'$ and the integral approximated by ``steps`` points of
    [`functional.quadrature`][normgrad.functional.quadrature] (Gauss-Legendre by default, as in
    Captum). Points are explained ``batch_size`` samples at a time (at least one whole batch), so
    memory does not grow with ``steps``. ``target=None`` means the class predicted for
    ``x``; a callable target is called on each point's output of N samples, as for the
    caller's batch. ``attribution`` is the signed IG ``(N, C, *spatial)``.

    Args:
        model: the classifier.
        steps: number of quadrature points.
        baseline: ``None`` (zeros), a finite number, or a finite tensor broadcastable to
            the input.
        method: ``"gausslegendre"``, ``"riemann_trapezoid"``, ``"riemann_middle"``,
            ``"riemann_left"`` or ``"riemann_right"``.
        batch_size: samples per forward/backward pass.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        steps: int = 50,
        baseline: float | torch.Tensor | None = None,
        method: str = "gausslegendre",
        batch_size: int = 64,
    ) -> None:
        super().__init__(model)
        self.steps = check_positive_int(steps, "steps")
        self.alphas, self.weights = quadrature(self.steps, method)
        self.method = method
        if isinstance(baseline, torch.Tensor):
            check_finite_tensor(baseline, "baseline")
        elif baseline is not None:
            if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real):
                raise ArgumentTypeError(
                    f"baseline: expected None, a number or a tensor, got {describe(baseline)}"
                )
            baseline = check_number(baseline, "baseline")
        self.baseline = baseline
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        with deferred_checks():  # every check of the call read once, at its end
            return self._integrate(x, target)

    def _integrate(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        check_input(x, finite=False)
        # copied to the device once, queued without waiting for the device (to_device)
        all_weights = to_device(self.weights, x.device, x.dtype)
        fixed = _fix_target(self.model, x, target)
        x = x.detach()
        baseline = baseline_like(0.0 if self.baseline is None else self.baseline, x)
        delta = x - baseline
        batch = x.shape[0]
        k = classes_per_sample(fixed)  # K classes per sample: gradients of N * K rows
        rows = x.repeat_interleave(k, 0) if k else x
        total = torch.zeros_like(rows)
        classes: torch.Tensor | None = None
        for start, stop, repeated in _chunks(self.steps, batch, self.batch_size, fixed):
            alphas = self.alphas[start:stop]
            points = torch.cat([baseline + a * delta for a in alphas])
            result = capture(self.model, points, [], repeated, input_gradient=True)
            assert result.input_gradient is not None
            classes = result.classes[:batch] if result.classes is not None else None
            grads = result.input_gradient.view(stop - start, *rows.shape)
            weights = all_weights[start:stop]
            total += (weights.view(-1, *([1] * x.ndim)) * grads).sum(dim=0)
        attribution = (delta.repeat_interleave(k, 0) if k else delta) * total
        explanation = build_explanation(
            x.shape[2:], classes, raw=reduce_channels(attribution), attribution=attribution
        )
        return per_class(explanation, k) if k else explanation

    def __repr__(self) -> str:
        name = type(self.model).__name__
        return f"IntegratedGradients({name}, steps={self.steps}, method={self.method!r})"
