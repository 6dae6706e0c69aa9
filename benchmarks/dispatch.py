"""Host synchronisations and kernels per call: device-independent counts beside the times.

Every case of the timings is called once inside the counter of
``tests/dispatch_count.py`` (a dispatch mode: the operators that synchronise the host
with a CUDA device, listed there once, and the non-view kernels dispatched). The counts
depend on the code and the model, not on the device or the input's size, so they are taken
on the CPU, on the timings' model (ResNet-50, random weights) and layers, at 112x112,
batch 2: the same numbers whatever machine runs the benchmark.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch
from cases import MULTI, ROOT, SINGLE, floor, model_and_input, paper_methods

import normgrad

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.dispatch_count import count  # from the repository root, added just above

SIZE, BATCH = 112, 2


def _counted(call: Callable[[], object]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant maps of a random model's last block
        counts = count(call)
    return {
        "syncs": counts.sync_count,
        "by operator": dict(counts.syncs),
        "kernels": counts.kernels,
    }


def bench_dispatch() -> dict[str, Any]:
    """Syncs and kernels of one call of each timed case; kernels over the floor of the same
    layers (bare hooks, ``autograd.grad`` to their activations) for the layer methods."""
    device = torch.device("cpu")
    model, x = model_and_input(SIZE, BATCH, device)
    floors = {
        "multi": _counted(lambda: floor(model, x, MULTI))["kernels"],
        "single": _counted(lambda: floor(model, x, [SINGLE]))["kernels"],
    }
    multi = normgrad.NormGrad(model, MULTI, "conv3x3")
    single = normgrad.NormGrad(model, SINGLE, "conv3x3")
    gradcam = normgrad.GradCAM(model, SINGLE)
    variants = [
        normgrad.NormGrad(model, layers, vil)
        for vil in ("scaling", "conv1x1", "conv3x3")
        for layers in (SINGLE, MULTI)
    ]
    methods = paper_methods(model)
    box = torch.tensor([[SIZE // 4, SIZE // 4, SIZE // 2, SIZE // 2]])
    data = [(x, None, [box] * BATCH)]
    cases: dict[str, tuple[Callable[[], object], str | None]] = {
        "NormGrad multi conv3x3": (lambda: multi(x, 1), "multi"),
        "NormGrad single conv3x3": (lambda: single(x, 1), "single"),
        "normgrad GradCAM": (lambda: gradcam(x, 1), "single"),
        "six variants shared": (lambda: normgrad.explain_shared(variants, x, 1), "multi"),
        "protocol batch (evaluate, shared passes)": (
            lambda: normgrad.evaluate(model, methods, data, smoothing_sigma=2.0, progress=False),
            None,
        ),
    }
    res: dict[str, Any] = {
        "size": SIZE,
        "batch": BATCH,
        "model": "resnet50",
        "floor kernels": floors,
    }
    for name, (call, layers) in cases.items():
        counted = _counted(call)
        if layers is not None:
            counted["over the floor"] = counted["kernels"] - floors[layers]
        res[name] = counted
    return res
