"""Peak memory of one call, measured in a fresh process per case.

On the CPU: the rise of the kernel's resident-memory high-water mark (reset just before the
call); on CUDA: ``max_memory_allocated``. The parent runs this file as a script::

    python benchmarks/memory.py CASE SIZE BATCH DEVICE

which prints the peak extra bytes of one call of ``CASE`` on its last line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
from cases import MULTI, floor, forward_backward, kernel_inputs, model_and_input, unfold_conv_map
from harness import sync

import normgrad
from normgrad import functional as nf


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark of resident memory (VmHWM) for this process."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_probe(case: str, size: int, batch: int, device_name: str) -> int:
    """Peak extra memory (bytes) of one call of ``case``; run in a fresh subprocess."""
    device = torch.device(device_name)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if case.startswith("kernel-"):
        act, grad = kernel_inputs(size, batch, device)
        fn: Callable[[], Any] = (
            (lambda: nf.normgrad_map(act, grad, "conv3x3"))
            if case == "kernel-normgrad"
            else (lambda: unfold_conv_map(act, grad, 3))
        )
    else:
        model, x = model_and_input(size, batch, device)
        explainer = normgrad.NormGrad(model, MULTI, "conv3x3")
        fn = {
            "explainer": lambda: explainer(x, 1),
            "floor": lambda: floor(model, x, MULTI),
            "forward-backward": lambda: forward_backward(model, x),
        }[case]
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    # The parent sets MALLOC_MMAP_THRESHOLD_ so that large blocks are mapped and unmapped
    # with each allocation: the resident set then follows live memory closely.
    _reset_peak_rss()
    base = _status_bytes("VmRSS")
    fn()
    return _status_bytes("VmHWM") - base


def peak_memory(case: str, size: int, batch: int, device: str) -> int:
    """Run :func:`memory_probe` for ``case`` in a fresh Python process and return its bytes."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, __file__, case, str(size), str(batch), device],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return int(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    case, size, batch, device = sys.argv[1:]
    print(memory_probe(case, int(size), int(batch), device))
