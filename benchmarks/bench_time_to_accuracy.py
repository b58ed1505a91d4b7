"""Time to accuracy (issue 22; plan: docs/plans/time_to_accuracy.md): for each training seed, the
wall seconds from the start of a fresh `python -m mnist_pairs train` process to its end, and
whether its validation-selected checkpoint reaches the target on the held-out pairs.

    python benchmarks/bench_time_to_accuracy.py --params params/confirm_fast.yaml --seeds 10-12 \
        --out-dir experiments/sweeps/confirm_fast__validation_bf16 \
        --out "reports/benchmarks/time_to_accuracy_{precision}.json"         # make confirm-fast (bf16 CPU)
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/... \
        --out-dir experiments/sweeps/confirm_fast__validation ...          # the fp32 path on any CPU

`{precision}` in --out is replaced by the runs' precision (bf16 or fp32): one JSON per path. Each
seed's run goes to <out-dir>/seed<N>/, as a sweep lays them out, so a folder named
<group>__<protocol> under experiments/sweeps/ is counted by `python -m mnist_pairs summarize`.

What the clock covers: interpreter start, imports, data preparation, training with its per-epoch
scoring (validation and test pairs), and what `train.finish` scores at the end: the selected and the
last model on every pair set (held-out, and the confirmation pairs when set), then the open-set and
one-shot metrics. One seed at a time, nothing else should run. A recipe with
`fused_blocks: true` has its C++ kernel built before the first clock starts; that build is reported
apart (`fused_build_s`). Writes data only: the last line printed is one JSON object; `--out FILE`
also writes it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from mnist_pairs.config import load_config
from mnist_pairs.errors import UserError
from mnist_pairs.models import parameter_count
from mnist_pairs.paramfile import parse_int_list, parse_override
from mnist_pairs.paths import EXPERIMENTS_DIR, PROJECT_ROOT, resolve
from mnist_pairs.runs import Run
from mnist_pairs.stats import interval
from timing import emit, provenance

TARGET_ACC, SEED_FLOOR = 0.993, 0.992          # mean held-out accuracy, and every seed's
TARGET_S = {"bf16": 120.0, "fp32": 300.0}      # mean wall seconds, per precision path


def build_fused_kernel(cfg) -> float | None:
    """Seconds to build the fused kernel (None when the recipe does not use it)."""
    if not cfg.fused_blocks:
        return None
    from mnist_pairs.accel import fused

    t0 = time.perf_counter()
    fused.kernels()
    return round(time.perf_counter() - t0, 2)


def timed_run(params: str, seed: int, overrides: list[str], out_dir: Path) -> dict:
    """Train one seed in its own process, into out_dir/seed<N>/ as a sweep lays out its runs (so
    `python -m mnist_pairs summarize` counts a folder named <group>__<protocol>), and time it from
    spawn to exit."""
    run_dir = out_dir / f"seed{seed}"
    if (run_dir / "results.json").is_file():
        raise SystemExit(f"{run_dir} already holds a finished run: timing it again would time nothing "
                         f"(give another --out-dir, or delete it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mnist_pairs", "train", "--params", params, "--set", f"seed={seed}",
           "--set", f"out_dir={out_dir}", "--set", f"run_name=seed{seed}", *[a for o in overrides for a in ("--set", o)]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: training failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    run = Run(run_dir)
    res, cfg = run.results, run.cfg
    confirm = res.get("best_confirm", {}).get("acc")
    return {"seed": seed, "wall_s": round(wall, 1), "train_s": round(res["train_seconds"], 1),
            "epochs": res["epochs"], "selected_epoch": res["selected_epoch"], "precision": cfg.precision,
            "val_acc": res["best_val"]["acc"], "heldout_acc": res["best_heldout"]["acc"],
            "confirm_acc": confirm, "reached": res["best_heldout"]["acc"] >= TARGET_ACC,
            "run_dir": os.path.relpath(run.dir, PROJECT_ROOT)}


def verdict(runs: list[dict]) -> dict:
    """The plan's target on these runs: mean held-out ≥ TARGET_ACC, every seed ≥ SEED_FLOOR,
    mean wall ≤ TARGET_S of their precision."""
    precisions = sorted({r["precision"] for r in runs})
    if len(precisions) != 1:
        raise SystemExit(f"the runs used different precisions {precisions}: one path per benchmark")
    heldout, wall = interval([r["heldout_acc"] for r in runs]), interval([r["wall_s"] for r in runs])
    limit = TARGET_S.get(precisions[0])
    acc_ok = heldout["mean"] >= TARGET_ACC and all(r["heldout_acc"] >= SEED_FLOOR for r in runs)
    time_ok = limit is not None and wall["mean"] <= limit
    return {"precision": precisions[0], "heldout_acc": heldout, "wall_s": wall,
            "target": {"heldout_acc": TARGET_ACC, "every_seed_heldout_acc": SEED_FLOOR, "wall_s": limit},
            "accuracy_met": acc_ok, "time_met": time_ok, "met": acc_ok and time_ok}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", required=True, help="the recipe's params file")
    p.add_argument("--seeds", required=True, help='training seeds, e.g. "10-12" or "10,11,12"')
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--out-dir", default=None, help="where the runs go (default experiments/time_to_accuracy/<recipe>)")
    p.add_argument("--out", default=None, help='also write the JSON to this file ("{precision}" is replaced by bf16 or fp32)')
    args = p.parse_args(argv)
    try:  # bad seeds or a bad recipe: one `error: …` line (exit 2) before anything runs
        seeds = parse_int_list(args.seeds, "--seeds")
        cfg = load_config(args.params, **dict(parse_override(o) for o in args.set))
    except UserError as e:
        p.error(str(e))
    out_dir = resolve(args.out_dir) if args.out_dir else EXPERIMENTS_DIR / "time_to_accuracy" / Path(args.params).stem
    fused_build_s = build_fused_kernel(cfg)
    runs = []
    for seed in seeds:
        runs.append(timed_run(args.params, seed, args.set, out_dir))
        print(f"seed {seed}: {runs[-1]['wall_s']:.0f} s, held-out {runs[-1]['heldout_acc']:.4f}", flush=True)
    result = {"recipe": args.params, "overrides": args.set, "seeds": seeds, "runs": runs, **verdict(runs),
              "fused_build_s": fused_build_s, "parameters": parameter_count(cfg.model), **provenance(__file__, argv)}
    emit(result, args.out.replace("{precision}", result["precision"]) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
