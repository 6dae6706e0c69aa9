r"""Methods that average over perturbed inputs: SmoothGrad and Integrated Gradients."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from . import functional as F
from ._base import Explainer, Explanation, explanation_from_raw
from ._capture import capture, repeat_target, resolve_classes
from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ._target import Target

_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


def _check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArgumentTypeError(f"{name}: expected a positive int, got {describe(value)}")
    if value < 1:
        raise InvalidArgumentError(f"{name}: expected a positive int, got {value}")
    return value


def _chunks(total: int, batch: int, per_chunk: int) -> Iterator[tuple[int, int]]:
    """Split ``total`` copies of a batch of ``batch`` samples into runs of whole copies."""
    copies = max(1, per_chunk // batch)
    for start in range(0, total, copies):
        yield start, min(total, start + copies)


class SmoothGrad(Explainer):
    r"""SmoothGrad (Smilkov et al., 2017) around any explainer.

    Averages the wrapped explainer's map over ``n_samples`` noisy copies of the input,
    :math:`x + \epsilon`, :math:`\epsilon \sim \mathcal{N}(0, \sigma^2)`, with
    :math:`\sigma = \mathrm{noise\_level} \cdot (\max x - \min x)` per sample, then min-max
    normalises. The averaged map is the explainer's ``raw`` map (non-negative for every
    normgrad method) where it has one, else its ``saliency`` (multi-layer NormGrad).

    Every noisy copy is explained for the same class: ``target=None`` means the class the
    model predicts for the clean input. Copies are explained ``batch_size`` samples at a
    time (at least one whole copy of the batch), so memory does not grow with
    ``n_samples``; the result does not depend on ``batch_size``.

    Args:
        explainer: any normgrad explainer.
        n_samples: number of noisy copies.
        noise_level: noise standard deviation as a fraction of each sample's value range.
        batch_size: samples per forward/backward pass.
        seed: seed of the noise (a generator on the input's device).
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
        self.n_samples = _check_positive_int("n_samples", n_samples)
        if not isinstance(noise_level, (int, float)) or not noise_level >= 0:
            raise InvalidArgumentError(f"noise_level: expected a number >= 0, got {noise_level!r}")
        self.noise_level = float(noise_level)
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.seed = seed

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        target = resolve_classes(self.model, x, target)
        batch = x.shape[0]
        flat = x.detach().flatten(1)
        spread = (flat.amax(dim=1) - flat.amin(dim=1)).view(-1, *([1] * (x.ndim - 1)))
        sigma = self.noise_level * spread
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        total: torch.Tensor | None = None
        for start, stop in _chunks(self.n_samples, batch, self.batch_size):
            noisy = torch.cat(
                [
                    x.detach()
                    + sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
                    for _ in range(start, stop)
                ]
            )
            result = self.explainer.explain(noisy, repeat_target(target, stop - start))
            maps = result.raw if result.raw is not None else result.saliency
            summed = maps.view(stop - start, batch, *maps.shape[1:]).sum(dim=0)
            total = summed if total is None else total + summed
        assert total is not None
        classes = target if isinstance(target, torch.Tensor) else None
        return explanation_from_raw(total / self.n_samples, classes)

    def __repr__(self) -> str:
        return (
            f"SmoothGrad({self.explainer!r}, n_samples={self.n_samples}, "
            f"noise_level={self.noise_level})"
        )


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[list[float], list[float]]:
    """Points ``alpha`` in ``[0, 1]`` and weights for :math:`\\int_0^1 f(\\alpha) d\\alpha`.

    ``riemann_trapezoid`` weights sum to 1 (``1/(n-1)``, halved at both ends). Captum's
    trapezoid weights are ``1/n`` (halved at the ends) and sum to ``1 - 1/n``: its result is
    ``(n - 1) / n`` times this one.
    """
    if method not in _METHODS:
        raise InvalidArgumentError(f"method: expected one of {', '.join(_METHODS)}, got {method!r}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (nodes + 1)).tolist(), (0.5 * weights).tolist()
    if steps < 2 and method == "riemann_trapezoid":
        raise InvalidArgumentError(f"steps: expected at least 2 for {method}, got {steps}")
    if method == "riemann_trapezoid":
        alphas = np.linspace(0, 1, steps)
        weights = np.full(steps, 1 / (steps - 1))
        weights[[0, -1]] /= 2
        return alphas.tolist(), weights.tolist()
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return [(i + offset) / steps for i in range(steps)], [1 / steps] * steps


class IntegratedGradients(Explainer):
    r"""Integrated Gradients (Sundararajan et al., 2017), reduced by :math:`\sum_c |\cdot|`.

    .. math:: \mathrm{IG}(x) = (x - x') \odot \int_0^1
              \frac{\partial s(x' + \alpha (x - x'))}{\partial x} \, d\alpha

    with baseline :math:`x'` and the integral approximated by ``steps`` points of
    :func:`quadrature` (Gauss-Legendre by default, as in Captum). Points are explained
    ``batch_size`` samples at a time (at least one whole batch), so memory does not grow
    with ``steps``. ``target=None`` means the class predicted for ``x``. ``attribution``
    is the signed IG ``(N, C, *spatial)``.

    Args:
        model: the classifier.
        steps: number of quadrature points.
        baseline: ``None`` (zeros), a number, or a tensor broadcastable to the input.
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
        self.steps = _check_positive_int("steps", steps)
        self.alphas, self.weights = quadrature(self.steps, method)
        self.method = method
        if baseline is not None and not isinstance(baseline, (int, float, torch.Tensor)):
            raise ArgumentTypeError(
                f"baseline: expected None, a number or a tensor, got {describe(baseline)}"
            )
        self.baseline = baseline
        self.batch_size = _check_positive_int("batch_size", batch_size)

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        if self.baseline is None:
            return torch.zeros_like(x)
        if isinstance(self.baseline, torch.Tensor):
            try:
                return self.baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
            except RuntimeError:
                raise ShapeError(
                    f"baseline: expected a tensor broadcastable to the input shape "
                    f"{tuple(x.shape)}, got shape {tuple(self.baseline.shape)}",
                    self.baseline.shape,
                ) from None
        return torch.full_like(x, float(self.baseline))

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        target = resolve_classes(self.model, x, target)  # also validates x
        x = x.detach()
        baseline = self._baseline(x)
        delta = x - baseline
        batch = x.shape[0]
        total = torch.zeros_like(x)
        for start, stop in _chunks(self.steps, batch, self.batch_size):
            alphas = self.alphas[start:stop]
            points = torch.cat([baseline + a * delta for a in alphas])
            result = capture(
                self.model, points, [], repeat_target(target, stop - start), input_gradient=True
            )
            assert result.input_gradient is not None
            grads = result.input_gradient.view(stop - start, *x.shape)
            weights = torch.tensor(self.weights[start:stop], dtype=x.dtype, device=x.device)
            total += (weights.view(-1, *([1] * x.ndim)) * grads).sum(dim=0)
        attribution = delta * total
        classes = target if isinstance(target, torch.Tensor) else None
        return explanation_from_raw(F.reduce_channels(attribution), classes, attribution)

    def __repr__(self) -> str:
        name = type(self.model).__name__
        return f"IntegratedGradients({name}, steps={self.steps}, method={self.method!r})"
