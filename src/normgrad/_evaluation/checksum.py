"""An exact checksum of a tensor's bytes, computed on its device: the model's weights in
an evaluation's fingerprint (``fingerprint.py``) are compared by it."""

from __future__ import annotations

import functools

import torch

from .._transfer import to_device

_ROW = 64  # pieces per row sum: 64 products below 2**16 * 2**31 are exact in float64
_BLOCK = 1 << 22  # pieces hashed at a time (32 MiB of float64)
_MODULI = (2_147_483_647, 2_147_483_629)  # primes below 2**31: residue products fit int64
# bases: primitive roots of their primes (b**j repeats only after q - 1 pieces), drawn
# from sha256 so that nothing about them is special
_BASES = (128_797_506, 1_935_593_101)


def _residues(base: int, modulus: int, count: int, step: int) -> list[int]:
    """``base ** (step * k) % modulus`` for ``k`` in ``range(count)``, on the host."""
    factor, out, value = pow(base, step, modulus), [], 1
    for _ in range(count):
        out.append(value)
        value = value * factor % modulus
    return out


@functools.lru_cache(maxsize=8)
def _tables(device: torch.device, row: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The multipliers of the pieces within a row, float64 ``(row, 2)``, and of the rows
    within a block, int64 ``(block // row, 2)``: powers of each base modulo its prime."""
    pairs = list(zip(_BASES, _MODULI))
    within = [_residues(b, m, row, 1) for b, m in pairs]
    across = [_residues(b, m, block // row, row) for b, m in pairs]
    return (
        to_device(within, device, torch.float64).T.contiguous(),
        to_device(across, device, torch.int64).T.contiguous(),
    )


def checksum(tensor: torch.Tensor) -> torch.Tensor:
    r"""A checksum of ``tensor``'s bytes, on its device: an int64 tensor ``(2,)``.

    The bytes are cut into pieces $p_0, p_1, \dots$ (16-bit little-endian signed words, or
    single unsigned bytes when their count is odd) and each value is the polynomial
    $\sum_j p_j \, b^j \bmod q$ for two primes $q$ below $2^{31}$, each with a base $b$
    that is a primitive root of $q$ (drawn from sha256, nothing special about it).

    - A change of one piece (any bit flip, one value's sign, one value anywhere) always
      changes both values: the change is $d \, b^j$ with $0 < |d| < 2^{16} < q$ and $b^j$
      invertible modulo $q$.
    - Any other change (several signs, a permutation of values) changes a non-zero
      polynomial of $b$, which vanishes at the fixed bases only by chance (a polynomial of
      degree $n$ has at most $n$ roots among the $q$ residues): about $2^{-62}$ for both.
      Unlike a sum of words, where changes of opposite sign at matching positions cancel,
      nothing in the structure of a change makes that likelier.

    The values are exact integer arithmetic (a row of ``_ROW`` pieces times their
    multipliers summed by a float64 matrix product, exact below $2^{53}$ whatever the order
    of its sums; residue products below $2^{62}$ in int64; a block of ``_BLOCK`` pieces at
    a time), so they are the same on every device and rank. A tensor on the ``meta``
    device gives ``-1``.
    """
    data = tensor.detach()
    if data.layout != torch.strided and data.device.type != "meta":
        data = data.to_dense()
    if data.layout != torch.strided or data.device.type == "meta":
        return torch.full((2,), -1, dtype=torch.int64)
    flat = data.resolve_conj().resolve_neg().contiguous().reshape(-1)
    raw = flat.view(torch.uint8) if flat.numel() else flat.new_zeros(0, dtype=torch.uint8)
    pieces = raw.view(torch.int16) if raw.numel() % 2 == 0 else raw
    device = raw.device
    within, across = _tables(device, _ROW, _BLOCK)
    moduli = to_device(_MODULI, device, torch.int64)
    total = torch.zeros(2, dtype=torch.int64, device=device)
    for start in range(0, pieces.numel(), _BLOCK):
        part = pieces[start : start + _BLOCK].to(torch.float64)
        whole = part.numel() // _ROW * _ROW
        sums = [part[:whole].view(-1, _ROW) @ within]  # exact: below 2**53
        if whole < part.numel():  # the last row, short
            sums.append((part[whole:] @ within[: part.numel() - whole]).view(1, 2))
        rows = torch.cat(sums).to(torch.int64) % moduli
        weighted = (rows * across[: rows.shape[0]] % moduli).sum(0) % moduli
        first = [pow(b, start, m) for b, m in zip(_BASES, _MODULI)]  # the block's offset
        shift = to_device(first, device, torch.int64)
        total = (total + weighted * shift % moduli) % moduli
    return total
