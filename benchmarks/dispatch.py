"""Host synchronisations and kernels per call: device-independent counts beside the times.

Every case of the timings is called once inside the counter of
``tests/dispatch_count.py`` (a dispatch mode: the operators that synchronise the host
with a CUDA device, listed there once, and the non-view kernels dispatched). The counts
depend on the code and the model, not on the device or the input's size, so they are taken
on the CPU, on the timings' model (ResNet-50, random weights) and layers, at 112x112,
batch 2: the same numbers whatever machine runs the benchmark.

On a CUDA device the same calls are also made there, in CUDA's synchronisation debug
mode (``torch.cuda.set_sync_debug_mode``), which reports every operation that makes the
host wait for the device, including what a dispatch mode cannot see (a copy from the
device to the host, a blocking copy from pageable host memory to the device); the second
call of each case is counted, after a first that initialises the libraries.
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
from tests.dispatch_count import count, cuda_syncs  # from the repository root, added above

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


def bench_dispatch(device: torch.device) -> dict[str, Any]:
    """Syncs and kernels of one call of each timed case; kernels over the floor of the same
    layers (bare hooks, ``autograd.grad`` to their activations) for the layer methods. On
    a CUDA ``device``, also the synchronisations CUDA reports for each call there."""
    res = _cases_counted(torch.device("cpu"), _counted)
    if device.type == "cuda":
        try:
            on_device = _cases_counted(device, lambda call: {"syncs": cuda_syncs(call)})
        except Exception as error:  # reported, the CPU counts kept
            res["cuda syncs error"] = repr(error)
        else:
            for name, value in on_device.items():
                if isinstance(value, dict) and "syncs" in value and name in res:
                    res[name]["cuda syncs"] = value["syncs"]
    return res


def _cases_counted(
    device: torch.device, counted: Callable[[Callable[[], object]], dict[str, Any]]
) -> dict[str, Any]:
    model, x = model_and_input(SIZE, BATCH, device)
    floors = {
        "multi": counted(lambda: floor(model, x, MULTI)).get("kernels"),
        "single": counted(lambda: floor(model, x, [SINGLE])).get("kernels"),
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
    box = torch.tensor([[SIZE // 4, SIZE // 4, SIZE // 2, SIZE // 2]], device=device)
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
        res[name] = counted(call)
        if layers is not None and "kernels" in res[name]:
            res[name]["over the floor"] = res[name]["kernels"] - floors[layers]
    return res
