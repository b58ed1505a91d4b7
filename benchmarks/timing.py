"""Shared by the benchmark scripts (run as `python benchmarks/X.py`, so this imports as `timing`):
timing, the facts every result carries, and writing the result (JSON only)."""
from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from mnist_pairs.hardware import cpu_name
from mnist_pairs.paths import atomic_write_text


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


def provenance(script: str, argv: list[str] | None) -> dict:
    """Where and how a result was measured: CPU, threads, torch, the command line, the time."""
    args = sys.argv[1:] if argv is None else argv
    # the variables that cap the CPU's instruction set (to imitate an AVX2-only CPU) are part of the command
    caps = [f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ]
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "command": shlex.join([*caps, "python", f"benchmarks/{Path(script).name}", *args]),
            "isa_caps": dict(c.split("=", 1) for c in caps),
            "measured": datetime.now().astimezone().isoformat(timespec="seconds")}


def emit(result: dict, out: str | None) -> None:
    """Write `result` to `out` (if given) and print it as the last line of stdout."""
    if out:
        atomic_write_text(out, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    print(json.dumps(result, ensure_ascii=False))
