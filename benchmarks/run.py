"""normgrad performance benchmarks: one entry point, ratios measured in one run.

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--json PATH] [--markdown PATH]

Measures, on ResNet-50 with random weights:

1. NormGrad multi-layer conv3x3 (4 layers) against the floor (one forward plus an
   activation-only backward to ``layer2.0``, written by hand with bare hooks) and against a
   forward plus a full ``loss.backward()``, at 224x224 (batch 8) and 600x600 (batch 2),
   also with the input stored channels-last;
2. single-layer NormGrad and normgrad Grad-CAM at ``layer4.2`` against Captum's
   ``LayerGradCam`` and pytorch-grad-cam's ``GradCAM`` (when installed: ``pip install
   -e ".[bench]"``);
3. all six NormGrad variants in one shared pass against the most expensive single variant;
4. the conv3x3 patch-norm kernel against the literal unfold computation at ``layer2.0``
   of a 600x600 input: agreement, time and peak memory;
5. the Pointing Game on 1,000 maps of 600x600 with boxes against a per-sample loop and
   against one read of the maps (the memory-bandwidth bound of any exact method);
6. peak memory of the explainer call against a plain forward plus backward.

Times are medians with the spread (interquartile range) of single calls timed with
``torch.utils.benchmark.Timer``, interleaved round by round so that ratios survive a noisy
machine. Peak memory is measured in a fresh subprocess per case: the rise of the kernel's
resident-memory high-water mark (reset just before the call) on the CPU,
``max_memory_allocated`` on CUDA. Results are printed and written as JSON (with versions,
commit and hardware) and as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as tf
import torchvision
from torch.utils.benchmark import Timer

import normgrad
from normgrad import functional as F
from normgrad import metrics

ROOT = Path(__file__).resolve().parent.parent
MULTI = ["layer2.0", "layer3.0", "layer4.0", "layer4.2"]
SINGLE = "layer4.2"


# ---------------------------------------------------------------------------------------
# helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MIN_ROUNDS = 15
LOOP_ROUNDS = 3


def measure_group(
    fns: dict[str, Callable[[], Any]], device: torch.device, min_run_time: float
) -> dict[str, dict[str, float]]:
    """Median and interquartile range (seconds) of each function, timed interleaved.

    Each round calls every function once, in a fresh random order, so that slow drifts of a
    shared machine (frequency scaling, other processes) and the after-effects of one call on
    the next (allocator, caches) hit all of them alike and their ratios hold. Each
    call is timed with ``torch.utils.benchmark.Timer`` (one run, device synchronised, with
    torch's current number of threads).
    """
    timers = {}
    for name, fn in fns.items():
        fn()  # warm up
        sync(device)

        def call(fn: Callable[[], Any] = fn) -> None:
            fn()
            sync(device)

        # Timer runs its statement on one thread unless told otherwise: time with the
        # threads every other part of this script (and the user) runs with
        timers[name] = Timer(
            stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads()
        )
    times: dict[str, list[float]] = {name: [] for name in fns}
    shuffle = random.Random(0)
    start = time.perf_counter()
    rounds = 0
    while rounds < MIN_ROUNDS or (
        time.perf_counter() - start < min_run_time * len(fns) and rounds < 200
    ):
        order = list(timers)
        shuffle.shuffle(order)
        for name in order:
            times[name].append(timers[name].timeit(1).mean)
        rounds += 1
    out = {}
    for name, values in times.items():
        q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
        out[name] = {"median_s": float(median), "iqr_s": float(q3 - q1), "runs": len(values)}
    return out


def model_and_input(
    size: int, batch: int, device: torch.device
) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=2).eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    return model, x


def floor(model: torch.nn.Module, x: torch.Tensor, layers: list[str]) -> list[torch.Tensor]:
    """The minimum: bare forward hooks, one forward, ``autograd.grad`` to the activations."""
    acts: list[torch.Tensor] = []
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o: acts.append(o)) for n in layers
    ]
    try:
        out = model(x)
        grads = torch.autograd.grad(out[:, 1].sum(), acts)
    finally:
        for h in handles:
            h.remove()
    return list(grads)


def forward_backward(model: torch.nn.Module, x: torch.Tensor) -> None:
    out = model(x)
    out[:, 1].sum().backward()
    model.zero_grad(set_to_none=True)


def unfold_conv_map(activation: torch.Tensor, gradient: torch.Tensor, k: int) -> torch.Tensor:
    """The literal conv K x K NormGrad map through the unfolded (K^2 C, H W) tensor."""
    n, _, h, w = activation.shape
    patches = tf.unfold(activation, kernel_size=k, padding=k // 2)
    return gradient.norm(dim=1, keepdim=True) * patches.norm(dim=1).view(n, 1, h, w)


def loop_pointing_game(
    saliency: torch.Tensor, boxes: list[torch.Tensor], tolerance: float
) -> list[float]:
    """Per-sample Pointing Game in the style of TorchRay's benchmark.

    For each image: the argmax of its map, a boolean mask of its boxes, and an acceptance
    disk built from a meshgrid of squared distances; a hit if they overlap.
    """
    results = []
    h, w = saliency.shape[-2:]
    for smap, sample_boxes in zip(saliency, boxes):
        mask = torch.zeros(h, w, dtype=torch.bool)
        for x0, y0, x1, y1 in sample_boxes.tolist():
            mask[max(0, y0) : max(0, min(h, y1 + 1)), max(0, x0) : max(0, min(w, x1 + 1))] = True
        if not bool(mask.any()):
            results.append(float("nan"))
            continue
        y, x = divmod(int(smap.reshape(-1).argmax()), w)
        v, u = torch.meshgrid(
            (torch.arange(h, dtype=torch.float32) - y) ** 2,
            (torch.arange(w, dtype=torch.float32) - x) ** 2,
            indexing="ij",
        )
        accept = (v + u) < tolerance**2
        results.append(1.0 if bool((mask & accept).any()) else 0.0)
    return results


# ---------------------------------------------------------------------------------------
# peak memory, one fresh process per case


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
        model, x = model_and_input(size, batch, device)
        (grad,) = floor(model, x, ["layer2.0"])
        acts: list[torch.Tensor] = []
        h = model.layer2[0].register_forward_hook(lambda m, i, o: acts.append(o.detach()))
        with torch.no_grad():
            model(x)
        h.remove()
        act = acts[0]
        del model, x
        fn: Callable[[], Any] = (
            (lambda: F.normgrad_map(act, grad, "conv3x3"))
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
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-probe",
            case,
            "--size",
            str(size),
            "--batch",
            str(batch),
            "--device",
            device,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return int(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# the benchmarks


def _pytorch_grad_cam(
    model: torch.nn.Module, batch: int
) -> tuple[Callable[[torch.Tensor], Any], Callable[[], None]] | None:
    try:
        from pytorch_grad_cam import GradCAM as PGCGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    cam = PGCGradCAM(model=model, target_layers=[model.layer4[2]])
    targets = [ClassifierOutputTarget(1)] * batch
    return (lambda x: cam(input_tensor=x, targets=targets)), cam.activations_and_grads.release


def bench_passes(
    size: int, batch: int, device: torch.device, t: float, peers: bool
) -> dict[str, Any]:
    model, x = model_and_input(size, batch, device)
    res: dict[str, Any] = {"size": size, "batch": batch}
    multi = normgrad.NormGrad(model, MULTI, "conv3x3")
    fns: dict[str, Callable[[], Any]] = {
        "forward": lambda: model(x),
        "forward+backward": lambda: forward_backward(model, x),
        "floor multi (hooks + autograd.grad)": lambda: floor(model, x, MULTI),
        "NormGrad multi conv3x3": lambda: multi(x, 1),
    }
    if x.ndim == 4:
        # the same explainer on the same values stored channels-last (NHWC); the model is
        # untouched, convolutions follow the input's layout
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        fns["NormGrad multi conv3x3, channels_last input"] = lambda: multi(x_nhwc, 1)
    if peers:
        single = normgrad.NormGrad(model, SINGLE, "conv3x3")
        gradcam = normgrad.GradCAM(model, SINGLE)
        fns["floor single (hooks + autograd.grad)"] = lambda: floor(model, x, [SINGLE])
        fns["NormGrad single conv3x3"] = lambda: single(x, 1)
        fns["normgrad GradCAM"] = lambda: gradcam(x, 1)
        try:
            import captum.attr as ca

            lgc = ca.LayerGradCam(model, model.layer4[2])
            fns["Captum LayerGradCam"] = lambda: lgc.attribute(x, target=1)
        except ImportError:
            pass
    res.update(measure_group(fns, device, t))
    if peers:
        pgc = _pytorch_grad_cam(model, batch)
        if pgc is not None:
            # pytorch-grad-cam keeps hooks on the model for its lifetime: it gets a group of
            # its own, beside normgrad's single-layer methods, and its hooks are released.
            call, release = pgc
            try:
                timed = measure_group(
                    {
                        "pytorch-grad-cam GradCAM": lambda: call(x),
                        "NormGrad single conv3x3 (beside pytorch-grad-cam)": lambda: single(x, 1),
                        "normgrad GradCAM (beside pytorch-grad-cam)": lambda: gradcam(x, 1),
                    },
                    device,
                    t,
                )
            finally:
                release()
            res.update(timed)
        variants = {
            f"{vil} {'M' if multi_layer else 'single'}": normgrad.NormGrad(
                model, MULTI if multi_layer else SINGLE, vil
            )
            for vil in ("scaling", "conv1x1", "conv3x3")
            for multi_layer in (False, True)
        }
        group = {name: (lambda v=v: v(x, 1)) for name, v in variants.items()}
        group["six variants shared"] = lambda: normgrad.explain_shared(
            list(variants.values()), x, 1
        )
        timed = measure_group(group, device, t)
        res["six variants shared"] = timed.pop("six variants shared")
        res["variants alone"] = timed
    return res


def bench_kernel(size: int, batch: int, device: torch.device, t: float) -> dict[str, Any]:
    model, x = model_and_input(size, batch, device)
    (grad,) = floor(model, x, ["layer2.0"])
    acts: list[torch.Tensor] = []
    h = model.layer2[0].register_forward_hook(lambda m, i, o: acts.append(o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    act = acts[0]
    ours = F.normgrad_map(act, grad, "conv3x3")
    literal = unfold_conv_map(act, grad, 3)
    timed = measure_group(
        {
            "normgrad kernel": lambda: F.normgrad_map(act, grad, "conv3x3"),
            "unfold reference": lambda: unfold_conv_map(act, grad, 3),
        },
        device,
        t,
    )
    relative = float(((ours - literal).abs().max() / literal.abs().max()).item())
    return {"shape": list(act.shape), "max relative difference": relative, **timed}


def bench_pointing_game(n: int, size: int, device: torch.device, t: float) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    saliency = torch.rand(n, 1, size, size, generator=gen)
    boxes = []
    for _ in range(n):
        k = int(torch.randint(0, 4, (1,), generator=gen))
        xy = torch.randint(-20, size, (k, 2), generator=gen)
        wh = torch.randint(0, 80, (k, 2), generator=gen)
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    sal_dev = saliency.to(device)
    boxes_dev = [b.to(device) for b in boxes]
    ours = metrics.pointing_game(sal_dev, boxes_dev, 15).cpu()
    loop_times = []
    for _ in range(LOOP_ROUNDS):
        start = time.perf_counter()
        looped = loop_pointing_game(saliency, boxes, 15)
        loop_times.append(time.perf_counter() - start)
    q1, median, q3 = np.quantile(loop_times, [0.25, 0.5, 0.75])
    identical = bool(
        torch.equal(
            torch.nan_to_num(ours, nan=-1),
            torch.nan_to_num(torch.tensor(looped, dtype=torch.float32), nan=-1),
        )
    )
    return {
        "maps": n,
        "size": size,
        "identical results": identical,
        **measure_group(
            {
                "normgrad pointing_game": lambda: metrics.pointing_game(sal_dev, boxes_dev, 15),
                # any exact Pointing Game reads every value of every map once: the sum of
                # the maps is that read and nothing more (the memory-bandwidth bound)
                "one read of the maps (sum)": lambda: sal_dev.sum(),
            },
            device,
            t,
        ),
        "per-sample loop": {
            "median_s": float(median),
            "iqr_s": float(q3 - q1),
            "runs": len(loop_times),
        },
    }


# ---------------------------------------------------------------------------------------
# report


def environment(device: torch.device) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    info: dict[str, Any] = {
        "normgrad": normgrad.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "commit": commit + ("-dirty" if dirty else ""),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for peer in ("captum", "pytorch_grad_cam"):
        try:
            module = __import__(peer)
            info[peer] = getattr(module, "__version__", "installed")
        except ImportError:
            info[peer] = "not installed"
    return info


def ratio(a: dict[str, float], b: dict[str, float]) -> float:
    return a["median_s"] / b["median_s"]


def targets_table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(claim, measured, target, verdict) rows."""
    rows: list[tuple[str, str, str, str]] = []

    def add(
        claim: str, value: float, limit: float, better: str = "<=", fmt: str = "{:.2f}x"
    ) -> None:
        ok = value <= limit if better == "<=" else value >= limit
        rows.append(
            (claim, fmt.format(value), f"{better} {fmt.format(limit)}", "met" if ok else "missed")
        )

    for key in ("passes_224", "passes_600"):
        if key not in results:
            continue
        r = results[key]
        tag = f"{r['size']}x{r['size']}, batch {r['batch']}"
        add(
            f"NormGrad multi conv3x3 / floor ({tag})",
            ratio(r["NormGrad multi conv3x3"], r["floor multi (hooks + autograd.grad)"]),
            1.05,
        )
        add(
            f"NormGrad multi conv3x3 / forward+backward ({tag})",
            ratio(r["NormGrad multi conv3x3"], r["forward+backward"]),
            0.55,
        )
        if "Captum LayerGradCam" in r:
            add(
                f"NormGrad single / Captum LayerGradCam ({tag})",
                ratio(r["NormGrad single conv3x3"], r["Captum LayerGradCam"]),
                1.0,
            )
            add(
                f"normgrad GradCAM / Captum LayerGradCam ({tag})",
                ratio(r["normgrad GradCAM"], r["Captum LayerGradCam"]),
                1.0,
            )
        if "pytorch-grad-cam GradCAM" in r:
            single = r["NormGrad single conv3x3 (beside pytorch-grad-cam)"]
            cam = r["normgrad GradCAM (beside pytorch-grad-cam)"]
            add(
                f"NormGrad single / pytorch-grad-cam GradCAM ({tag})",
                ratio(single, r["pytorch-grad-cam GradCAM"]),
                0.35,
            )
            add(
                f"normgrad GradCAM / pytorch-grad-cam GradCAM ({tag})",
                ratio(cam, r["pytorch-grad-cam GradCAM"]),
                0.35,
            )
        if "six variants shared" in r:
            worst = max(v["median_s"] for v in r["variants alone"].values())
            add(
                f"six variants shared / slowest single variant ({tag})",
                r["six variants shared"]["median_s"] / worst,
                1.15,
            )
    if "kernel" in results:
        k = results["kernel"]
        add(
            "conv3x3 kernel: unfold time / normgrad time",
            ratio(k["unfold reference"], k["normgrad kernel"]),
            1.0,
            ">=",
        )
        if "peak_bytes" in k:
            add(
                "conv3x3 kernel: unfold peak memory / normgrad peak memory",
                k["peak_bytes"]["unfold"] / max(1, k["peak_bytes"]["normgrad"]),
                5.0,
                ">=",
            )
        rows.append(
            (
                "conv3x3 kernel: max relative difference to unfold",
                f"{k['max relative difference']:.1e}",
                "<= 1e-5",
                "met" if k["max relative difference"] <= 1e-5 else "missed",
            )
        )
    if "pointing_game" in results:
        p = results["pointing_game"]
        add(
            f"Pointing Game speed-up over a per-sample loop ({p['maps']} maps {p['size']}x{p['size']})",
            ratio(p["per-sample loop"], p["normgrad pointing_game"]),
            20.0,
            ">=",
            "{:.0f}x",
        )
        rows.append(
            (
                "Pointing Game results identical to the loop",
                str(p["identical results"]),
                "True",
                "met" if p["identical results"] else "missed",
            )
        )
    if "memory" in results:
        m = results["memory"]
        add(
            "peak memory: explainer / forward+backward",
            m["explainer"] / max(1, m["forward-backward"]),
            1.2,
        )
    return rows


def further_table(results: dict[str, Any]) -> list[tuple[str, str]]:
    """Ratios without a target that explain the ones with a target."""
    rows = []
    for key in ("passes_224", "passes_600"):
        if key not in results:
            continue
        r = results[key]
        tag = f"{r['size']}x{r['size']}, batch {r['batch']}"
        rows.append(
            (
                f"floor / forward+backward ({tag})",
                f"{ratio(r['floor multi (hooks + autograd.grad)'], r['forward+backward']):.2f}x",
            )
        )
        nhwc = r.get("NormGrad multi conv3x3, channels_last input")
        if nhwc is None:
            continue
        rows += [
            (
                f"NormGrad multi conv3x3, channels_last input / forward+backward ({tag})",
                f"{ratio(nhwc, r['forward+backward']):.2f}x",
            ),
            (
                f"NormGrad multi conv3x3, channels_last input / NormGrad multi conv3x3 ({tag})",
                f"{ratio(nhwc, r['NormGrad multi conv3x3']):.2f}x",
            ),
        ]
    p = results.get("pointing_game", {})
    if "one read of the maps (sum)" in p:
        rows += [
            (
                "Pointing Game: per-sample loop / one read of the maps (the ceiling)",
                f"{ratio(p['per-sample loop'], p['one read of the maps (sum)']):.0f}x",
            ),
            (
                "Pointing Game: normgrad / one read of the maps",
                f"{ratio(p['normgrad pointing_game'], p['one read of the maps (sum)']):.2f}x",
            ),
        ]
    return rows


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"Measured on {env['device']} ({env['processor']}, {env['cpu_count']} cores, {env['torch_threads']} torch threads"
        + (f", {env['gpu']}" if "gpu" in env else "")
        + f"), torch {env['torch']}, normgrad {env['normgrad']} at commit `{env['commit'][:12]}`, {env['date']}"
        + (", quick mode (reduced sizes)" if results["quick"] else "")
        + ".",
        "",
        "| claim | measured | target | |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets_table(results)]
    further = further_table(results)
    if further:
        lines += ["", "| further ratio (no target) | measured |", "| --- | --- |"]
        lines += [f"| {a} | {b} |" for a, b in further]
    lines += ["", "| case | median (s) | IQR (s) |", "| --- | --- | --- |"]
    for key in ("passes_224", "passes_600"):
        if key in results:
            r = results[key]
            for name, value in r.items():
                if isinstance(value, dict) and "median_s" in value:
                    lines.append(
                        f"| {name} ({r['size']}x{r['size']}, batch {r['batch']}) | {value['median_s']:.4f} | {value['iqr_s']:.4f} |"
                    )
                elif name == "variants alone":
                    for vname, v in value.items():
                        lines.append(
                            f"| NormGrad {vname} alone ({r['size']}x{r['size']}, batch {r['batch']}) | {v['median_s']:.4f} | {v['iqr_s']:.4f} |"
                        )
    for key in ("kernel", "pointing_game"):
        if key in results:
            for name, value in results[key].items():
                if isinstance(value, dict) and "median_s" in value:
                    lines.append(f"| {name} | {value['median_s']:.4f} | {value['iqr_s']:.4f} |")
    if "memory" in results:
        lines += ["", "| peak memory (MiB) | |", "| --- | --- |"]
        shape = f"{results['passes_224']['size']}x{results['passes_224']['size']}, batch {results['passes_224']['batch']}"
        lines += [
            f"| {k} ({shape}) | {v / 2**20:.1f} |"
            for k, v in results["memory"].items()
            if k not in ("size", "batch")
        ]
        if "kernel" in results and "peak_bytes" in results["kernel"]:
            lines += [
                f"| conv3x3 kernel: {k} | {v / 2**20:.1f} |"
                for k, v in results["kernel"]["peak_bytes"].items()
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, short timings (about a minute)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-run-time", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["passes_224", "passes_600", "kernel", "pointing_game", "memory"],
        help="run only these parts and merge them into the existing JSON file",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the Markdown from the JSON file"
    )
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(memory_probe(args.memory_probe, args.size, args.batch, args.device))
        return
    global MIN_ROUNDS
    MIN_ROUNDS = 3 if args.quick else 15
    device = torch.device(args.device)
    t = args.min_run_time if args.min_run_time is not None else (0.5 if args.quick else 3.0)
    small, big, maps = (112, 2, 100) if args.quick else (224, 8, 1000)
    big_size, big_batch = (300, 1) if args.quick else (600, 2)
    out_json = (
        args.json
        or ROOT / "benchmarks" / "results" / f"{device.type}{'-quick' if args.quick else ''}.json"
    )
    if args.report_only:
        text = markdown(json.loads(out_json.read_text()))
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
        return
    results: dict[str, Any] = {}
    if args.only and out_json.is_file():
        results = json.loads(out_json.read_text())
    results.update({"environment": environment(device), "quick": args.quick})
    steps: dict[str, Callable[[], Any]] = {
        "passes_224": lambda: bench_passes(small, big, device, t, peers=True),
        "passes_600": lambda: bench_passes(big_size, big_batch, device, t, peers=False),
        "kernel": lambda: bench_kernel(big_size, big_batch, device, t),
        "pointing_game": lambda: bench_pointing_game(
            maps, 600 if not args.quick else 300, device, t
        ),
    }
    for name, fn in steps.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr)
        results[name] = fn()
    if not args.only or "memory" in args.only:
        print("running memory probes ...", file=sys.stderr)
        results["memory"] = {
            case: peak_memory(case, small, big, args.device)
            for case in ("explainer", "floor", "forward-backward")
        }
        results["kernel"]["peak_bytes"] = {
            "normgrad": peak_memory("kernel-normgrad", big_size, big_batch, args.device),
            "unfold": peak_memory("kernel-unfold", big_size, big_batch, args.device),
        }
    text = markdown(results)
    print(text)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    print(f"wrote {out_json}", file=sys.stderr)


if __name__ == "__main__":
    main()
