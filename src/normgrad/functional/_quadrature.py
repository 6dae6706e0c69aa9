r"""Quadrature rules on $[0, 1]$, for path integrals such as Integrated Gradients."""

from __future__ import annotations

import numpy as np

from .._checks import check_positive_int
from .._errors import InvalidArgumentError

#: The rules [`quadrature`][normgrad.functional.quadrature] knows, Gauss-Legendre first (the
#: default, as in Captum).
QUADRATURE_METHODS = (
    "gausslegendre",
    "riemann_trapezoid",
    "riemann_middle",
    "riemann_left",
    "riemann_right",
)


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[list[float], list[float]]:
    r"""Points ``alpha`` in ``[0, 1]`` and weights for $\int_0^1 f(\alpha) d\alpha$.

    ``gausslegendre`` with ``n`` points is exact for polynomials of degree up to ``2n - 1``.
    ``riemann_trapezoid`` weights sum to 1 (``1/(n-1)``, halved at both ends). Captum's
    trapezoid weights are ``1/n`` (halved at the ends) and sum to ``1 - 1/n``: its result is
    ``(n - 1) / n`` times this one.

    Args:
        steps: number of points.
        method: one of ``"gausslegendre"``, ``"riemann_trapezoid"``, ``"riemann_middle"``,
            ``"riemann_left"``, ``"riemann_right"``.

    Returns:
        ``(alphas, weights)``, two lists of ``steps`` floats.

    Examples:
        >>> from normgrad.functional import quadrature
        >>> alphas, weights = quadrature(2)
        >>> # the integral of a^3 over [0, 1]
        >>> round(sum(w * a**3 for a, w in zip(alphas, weights)), 12)
        0.25
    """
    check_positive_int(steps, "steps")
    if method not in QUADRATURE_METHODS:
        raise InvalidArgumentError(
            f"method: expected one of {', '.join(QUADRATURE_METHODS)}, got {method!r}"
        )
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (nodes + 1)).tolist(), (0.5 * weights).tolist()
    if method == "riemann_trapezoid":
        if steps < 2:
            raise InvalidArgumentError(f"steps: expected at least 2 for {method}, got {steps}")
        alphas = np.linspace(0, 1, steps)
        trapezoid = np.full(steps, 1 / (steps - 1))
        trapezoid[[0, -1]] /= 2
        return alphas.tolist(), trapezoid.tolist()
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return [(i + offset) / steps for i in range(steps)], [1 / steps] * steps
