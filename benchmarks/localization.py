"""The localisation measures' speed: batched on the maps' device against per-image loops.

Run by hand, on an otherwise idle machine::

    OMP_NUM_THREADS=1 python benchmarks/localization.py          # CPU, reduced size
    python benchmarks/localization.py --size 224 --batch 64 --device cuda

Timed interleaved (``harness.measure_group``), each against the per-image loop over a
peer that computes the same values (the tests check they agree):

1. ``metrics.localization_auprc`` (no interval) against scikit-learn's
   ``average_precision_score`` image by image;
2. ``metrics.map_similarity(..., "ssim")`` against scikit-image's
   ``structural_similarity`` image by image;
3. ``metrics.binarize(..., "otsu")`` against CheXlocalize's steps image by image:
   min-max normalisation, 8-bit levels, OpenCV's ``threshold`` with Otsu's method;
4. ``metrics.bootstrap_mean`` (1,000 resamples of a ``(batch, 10)`` table, every
   resample at once) against a loop over the resamples in numpy.

Results go to ``benchmarks/results/localization-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cases import environment
from harness import measure_group

from normgrad import metrics

RESULTS = Path(__file__).resolve().parent / "results"


def _loops(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, Callable[[], Any]]:
    import cv2
    from skimage.metrics import structural_similarity
    from sklearn.metrics import average_precision_score

    m, k = maps.cpu().numpy(), masks.cpu().numpy()

    def otsu(x: np.ndarray) -> Any:  # CheXlocalize's steps: normalise, 8 bits, Otsu
        levels = np.uint8(255 * (x - x.min()) / (x.max() - x.min()))
        return cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)

    return {
        "auprc": lambda: [average_precision_score(b.ravel(), a.ravel()) for a, b in zip(m, k)],
        "ssim": lambda: [
            structural_similarity(
                a,
                a[::-1],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1,
            )
            for a in m
        ],
        "otsu": lambda: [otsu(x) for x in m],
    }


def _bootstrap_loop(table: np.ndarray, resamples: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    means = [
        np.nanmean(table[rng.integers(0, len(table), len(table))], axis=0) for _ in range(resamples)
    ]
    low, high = np.quantile(np.stack(means), [0.025, 0.975])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--min-rounds", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.size, args.size)
    maps = torch.rand(shape, generator=g, dtype=torch.float64).to(device)
    masks = (torch.rand(shape, generator=g) < 0.2).to(device)
    table = torch.rand(args.batch, 10, generator=g, dtype=torch.float64).to(device)
    loops = _loops(maps, masks)
    ours: dict[str, Callable[[], Any]] = {
        "auprc": lambda: metrics.localization_auprc(maps, masks, resamples=0),
        "ssim": lambda: metrics.map_similarity(maps, maps.flip(1), "ssim"),
        "otsu": lambda: metrics.binarize(maps, "otsu"),
        "bootstrap": lambda: metrics.bootstrap_mean(table, resamples=1000),
    }
    loops["bootstrap"] = lambda: _bootstrap_loop(table.cpu().numpy(), 1000)
    rows = []
    for name, fn in ours.items():
        timed = measure_group(
            {"batched": fn, "loop": loops[name]}, device, args.min_run_time, args.min_rounds
        )
        fast, slow = timed["batched"], timed["loop"]
        ratio = fast["median_s"] / slow["median_s"]
        rows.append({"measure": name, "batched": fast, "loop": slow, "ratio": ratio})
        print(f"{name}: {fast['median_s']:.4f} s vs {slow['median_s']:.4f} s, ratio {ratio:.2f}")
    setup = {
        "maps": f"{args.batch} x {args.size}x{args.size} (float64)",
        "device": str(device),
        "threads": torch.get_num_threads(),
        **environment(device),
    }
    stem = RESULTS / f"localization-{device.type}"
    stem.with_suffix(".json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))
    lines = [
        f"{args.batch} maps of {args.size}x{args.size}, {device.type}, "
        f"{setup['threads']} thread(s); medians over interleaved rounds.",
        "",
        "| measure | batched | per-image loop (peer) | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['measure']} | {r['batched']['median_s'] * 1e3:.1f} ms | "
            f"{r['loop']['median_s'] * 1e3:.1f} ms | {r['ratio']:.2f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
