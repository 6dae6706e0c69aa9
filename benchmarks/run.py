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
6. peak memory of the explainer call against a plain forward plus backward;
8. the detection metrics: FROC (peaks, matching to boxes, ellipses and polygons) and the
   energy pointing game on 1,000 maps of 600x600 against one read of the maps, and the
   forward passes per image of deletion/insertion (counted);
7. multi-layer NormGrad on a ViT-B/16 (four blocks, tokens read as the patch grid) against
   its floor (forward plus an activation-only backward to the earliest hooked block), at the
   size and batch of part 1;
9. host synchronisations and kernels per call of the cases of parts 1-3 and the protocol
   batch, counted with a dispatch mode (device-independent: on the CPU, whatever
   ``--device``), kernels over the floor of the same layers; on CUDA also the
   synchronisations CUDA's debug mode reports for each call.

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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from cases import (
    ROOT,
    bench_kernel,
    bench_passes,
    bench_pointing_game,
    bench_protocol,
    bench_transformer,
    environment,
)
from detection import bench_detection
from dispatch import bench_dispatch
from memory import memory_probe, peak_memory
from report import markdown


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, short timings (a few minutes)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-run-time", type=float, default=None)
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds per case (default 15, quick 3)"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[
            "passes_224",
            "passes_600",
            "kernel",
            "transformer",
            "protocol",
            "pointing_game",
            "detection",
            "dispatch",
            "memory",
        ],
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
    rounds = args.rounds or (3 if args.quick else 15)
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
    if not (args.only and "environment" in results):  # merged parts keep the first run's
        results["environment"] = environment(device)
    results["quick"] = args.quick
    steps: dict[str, Callable[[], Any]] = {
        "passes_224": lambda: bench_passes(small, big, device, t, rounds, peers=True),
        "passes_600": lambda: bench_passes(big_size, big_batch, device, t, rounds, peers=False),
        "kernel": lambda: bench_kernel(big_size, big_batch, device, t, rounds),
        "transformer": lambda: bench_transformer(small, big, device, t, rounds),
        "protocol": lambda: bench_protocol(small, big, device, t, rounds),
        "pointing_game": lambda: bench_pointing_game(
            maps, 600 if not args.quick else 300, device, t, rounds
        ),
        "detection": lambda: bench_detection(
            maps, 600 if not args.quick else 300, device, t, rounds
        ),
        "dispatch": lambda: bench_dispatch(device),
    }
    for name, fn in steps.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr)
        results[name] = fn()
        if args.only:  # a part measured alone records where it ran; the others keep theirs
            results[name]["environment"] = environment(device)
        save(out_json, results)  # a run stopped later keeps the parts measured (--report-only)
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
    save(out_json, results)
    if args.markdown:
        args.markdown.write_text(text)
    print(f"wrote {out_json}", file=sys.stderr)


def save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
