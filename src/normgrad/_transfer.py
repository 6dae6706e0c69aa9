"""Copies of host data to the device that do not wait for it.

A copy from the host to a CUDA device made as PyTorch makes it by default
(``torch.tensor(values, device=device)``, ``host_tensor.to(device)``) is followed by a
synchronisation of the stream: the host waits for every kernel queued before it, as a
read does, and the device then idles while the host issues the rest of the call. Made
with ``non_blocking=True``, the copy is queued behind those kernels instead: from pageable
memory (every tensor made here) CUDA stages the values before the call returns, so the
source may change or go at once; a pinned source must stay as it is until the device has
used it, as with any non-blocking copy. A copy from a device to the host must wait, and
is never made here; nor is a non-blocking copy to another kind of device (to Apple's MPS,
a non-blocking copy from a temporary host tensor can read memory already freed).
"""

from __future__ import annotations

from typing import Any

import torch


def to_device(
    data: Any, device: torch.device | str | None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``data`` (a tensor, or numbers, nested lists, a numpy array: copied) as a tensor on
    ``device`` (``None``: where it is; the host for data), in ``dtype`` if given; a copy
    from the host to a CUDA device is queued without waiting for the device, any other is
    made as ``Tensor.to`` makes it."""
    tensor = data if isinstance(data, torch.Tensor) else torch.tensor(data, dtype=dtype)
    target = tensor.device if device is None else device
    # to CUDA queued; to the host nothing is copied; to other devices as Tensor.to does
    queued = tensor.device.type == "cpu" and torch.device(target).type in ("cuda", "cpu")
    return tensor.to(device=target, dtype=dtype, non_blocking=queued)
