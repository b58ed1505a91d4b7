"""Shared by the benchmark scripts (run as `python benchmarks/X.py`, so this imports as `timing`)."""
from __future__ import annotations

import statistics
import time


def median_time(fn, reps: int, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` over `reps` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
