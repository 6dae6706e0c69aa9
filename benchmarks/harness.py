"""Timing harness: single calls timed with ``torch.utils.benchmark.Timer``, interleaved.

Each group of functions is timed round by round, every function once per round in a fresh
random order, and summarised by its median and interquartile range.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.benchmark import Timer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(times: Sequence[float]) -> dict[str, float]:
    """Median, interquartile range (seconds) and number of runs of a list of times."""
    q1, median, q3 = np.quantile(times, [0.25, 0.5, 0.75])
    return {"median_s": float(median), "iqr_s": float(q3 - q1), "runs": len(times)}


def make_clocks(
    fns: dict[str, Callable[[], Any]], device: torch.device, clock: str = "wall"
) -> dict[str, Callable[[], float]]:
    """Per function, a call that runs it once and returns the seconds it took, after one
    warm-up call. ``clock="wall"``: ``torch.utils.benchmark.Timer`` (device synchronised,
    with torch's current number of threads); ``clock="cpu"``: the process's CPU time
    (CPU devices only: on a machine shared with other work, time spent descheduled is
    not counted)."""
    if clock == "cpu" and device.type != "cpu":
        raise ValueError(f"clock='cpu' times the CPU only, not {device}")
    clocks: dict[str, Callable[[], float]] = {}
    for name, fn in fns.items():
        fn()  # warm up
        sync(device)
        if clock == "cpu":

            def cpu(fn: Callable[[], Any] = fn) -> float:
                start = time.process_time()
                fn()
                return time.process_time() - start

            clocks[name] = cpu
            continue

        def call(fn: Callable[[], Any] = fn) -> None:
            fn()
            sync(device)

        # Timer runs its statement on one thread unless told otherwise: time with the
        # threads every other part of the benchmarks (and the user) runs with
        timer = Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
        clocks[name] = lambda timer=timer: float(timer.timeit(1).mean)
    return clocks


def measure_group(
    fns: dict[str, Callable[[], Any]],
    device: torch.device,
    min_run_time: float,
    min_rounds: int,
    clock: str = "wall",
) -> dict[str, dict[str, float]]:
    """Median and interquartile range (seconds) of each function, timed interleaved.

    Each round calls every function once, in a fresh random order, so that slow drifts of a
    shared machine (frequency scaling, other processes) and the after-effects of one call on
    the next (allocator, caches) hit all of them alike and their ratios hold. Each
    call is timed with ``torch.utils.benchmark.Timer`` (one run, device synchronised, with
    torch's current number of threads). At least ``min_rounds`` rounds are run, then more
    until the group has taken ``min_run_time`` seconds per function (200 rounds at most).

    ``clock="cpu"`` times the process's CPU time instead (CPU devices only): on a machine
    shared with other work, the time a call waits descheduled is left out, so the ratios
    of single-threaded calls hold where wall-clock ones scatter.
    """
    clocks = make_clocks(fns, device, clock)
    times: dict[str, list[float]] = {name: [] for name in fns}
    shuffle = random.Random(0)
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (
        time.perf_counter() - start < min_run_time * len(fns) and rounds < 200
    ):
        order = list(clocks)
        shuffle.shuffle(order)
        for name in order:
            times[name].append(clocks[name]())
        rounds += 1
    return {name: summary(values) for name, values in times.items()}
