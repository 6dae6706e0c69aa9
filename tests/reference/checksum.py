"""Literal reference of the weights' checksum that evaluate writes in its records: the
polynomial sums written out with Python's integers."""

from __future__ import annotations

from normgrad._evaluation.checksum import _BASES, _MODULI


def reference_checksum(data: bytes) -> list[int]:
    """The checksum written out: the bytes as signed little-endian 16-bit pieces (unsigned
    single bytes when their count is odd), the polynomial sum p_j * base**j modulo each
    prime."""
    width = 2 if len(data) % 2 == 0 else 1
    pieces = [
        int.from_bytes(data[i : i + width], "little", signed=width == 2)
        for i in range(0, len(data), width)
    ]
    return [
        sum(p * pow(base, j, prime) for j, p in enumerate(pieces)) % prime
        for base, prime in zip(_BASES, _MODULI)
    ]
