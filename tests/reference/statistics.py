"""Literal references of the statistics the reports print: the exact one-sided sign-flip
test, every assignment of signs enumerated."""

from __future__ import annotations

import itertools


def reference_sign_flip_p(differences: list[float]) -> float:
    """Enumerate every assignment of signs; count the means at least the observed one."""
    n = len(differences)
    observed = sum(differences) / n
    count = 0
    for signs in itertools.product((1, -1), repeat=n):
        flipped = sum(s * d for s, d in zip(signs, differences)) / n
        count += flipped >= observed - 1e-12
    return count / (1 << n)
