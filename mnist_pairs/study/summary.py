"""reports/summary.json: one entry per group (params file x protocol), one row per training seed.

    python -m mnist_pairs summarize        # reads experiments/sweeps/*/seed*/results.json

A group found under experiments/sweeps/ replaces the committed one; a group that is only
committed (reports/sweeps/<group>/, e.g. after a fresh clone) is summarised again from its
committed run files, so running one sweep never drops the others.

Each group lists its runs (seed, selected epoch, test and held-out accuracy, the image-level
bootstrap interval, training time, precision, CPU/device) and the mean, standard deviation
and a 95 % t-interval of the mean of every numeric field, over seeds. The run files that
back each row are copied to reports/sweeps/<group>/seed<N>/ (small files only).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..models import parameter_count
from ..paths import SWEEPS_DIR, Reports, atomic_write_bytes, resolve, utc_now, utc_time
from ..errors import RunNotFound
from ..runs import DIGESTS, Run, write_json
from ..stats import interval
from . import recipes, speed

RUN_FILES = ("config.yaml", "history.json", "env.json", "results.json")
NUMERIC = ("selected_epoch", "val_acc", "final_val_acc", "test_acc", "test_acc_at_threshold", "final_test_acc", "best_test_acc",
           "heldout_acc", "heldout_auc", "heldout_acc_at_threshold", "final_heldout_acc", "train_seconds",
           "confirm_acc", "confirm_auc")


def run_row(run: Run) -> dict:
    r, env, cfg = run.results, run.env, run.cfg
    row = {"seed": cfg.seed, "selected_epoch": r["selected_epoch"],
           "val_acc": r["best_val"]["acc"] if "best_val" in r else None,
           "final_val_acc": r["final_val"]["acc"] if "final_val" in r else None,
           "test_acc": r["best_test"]["acc"], "test_acc_at_threshold": r["best_test"]["acc_at_threshold"],
           "final_test_acc": r["final_test"]["acc"], "best_test_acc": r["best_test_acc"],
           "heldout_acc": r["best_heldout"]["acc"], "heldout_auc": r["best_heldout"]["auc"],
           "heldout_ci95": r["best_heldout"]["ci95"], "heldout_pairs": r["best_heldout"]["pairs"],
           "heldout_acc_at_threshold": r["best_heldout"]["acc_at_threshold"],
           "final_heldout_acc": r["final_heldout"]["acc"], "threshold": r["threshold"],
           "train_seconds": r["train_seconds"], "autocast": env["autocast"], "precision": env["precision"],
           "cpu": env["cpu"], "cpu_native_bf16": env.get("cpu_native_bf16"), "device": env["device"],
           "gpu": env.get("gpu"), "torch": env["torch"], "git_commit": env["git_commit"], "started": env.get("started"),
           "finished": utc_time((run.dir / "results.json").stat().st_mtime)}
    if "best.pt" in (digests := run.digests()):     # the weights as the run wrote them (the checkpoint it scored)
        row["weights_sha256"] = digests["best.pt"]
    if "best_confirm" in r:    # the confirmation set (confirmation.py)
        c = r["best_confirm"]
        row |= {"confirm_acc": c["acc"], "confirm_auc": c["auc"], "confirm_ci95": c["ci95"], "confirm_pairs": c["pairs"]}
    return row


def aggregate(rows: list[dict]) -> tuple[dict, dict, dict]:
    """(mean, sd, ci95 of the mean) of each numeric field over the rows that have it."""
    mean, sd, ci = {}, {}, {}
    for k in NUMERIC:
        xs = [r[k] for r in rows if r.get(k) is not None]
        if xs:
            st = interval(xs)
            mean[k], sd[k], ci[k] = st["mean"], st["sd"], st["ci95"]
    return mean, sd, ci


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    """{"a": {"b": 1.0}} -> {"a.b": 1.0}: the numbers of a nested results entry, by path."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def _seed_text(seeds: list[int]) -> str:
    contiguous = seeds == list(range(seeds[0], seeds[-1] + 1))
    return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else ",".join(map(str, seeds))


def group(folder: Path) -> dict | None:
    runs = sorted((Run(p.parent) for p in folder.glob("seed*/results.json")), key=lambda r: r.cfg.seed)
    if not runs:
        return None
    cfg = runs[0].cfg
    rows = [run_row(r) for r in runs]
    mean, sd, ci = aggregate(rows)
    seeds = sorted(r["seed"] for r in rows)
    extra = {}
    if all("openset" in r.results for r in runs):   # open-set pair types and one-shot, over seeds
        flat = [flatten(r.results["openset"]) for r in runs]
        extra["openset"] = {k: interval([f[k] for f in flat]) for k in flat[0] if all(k in f for f in flat)}
    return {"name": folder.name.split("__")[0], "group": folder.name, "model": cfg.model, "protocol": cfg.protocol,
            "dataset": cfg.dataset, "train_classes": cfg.train_classes,
            "command": f"python -m mnist_pairs sweep --params params/{folder.name.split('__')[0]}.yaml "
                       f"--protocol {cfg.protocol} --seeds {_seed_text(seeds)}",
            "params": parameter_count(cfg.model), "n_runs": len(rows), "runs": rows,
            "mean": mean, "sd": sd, "ci95": ci, **extra,
            "config": {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "out_dir", "run_name")},
            "_runs": runs}


def _previous(out: Path) -> dict:
    """{(group, seed): finished} from the summary.json being replaced."""
    try:
        old = json.loads(out.read_text())["groups"]
    except (OSError, ValueError, KeyError):
        return {}
    return {(name, r["seed"]): r["finished"] for name, g in old.items() for r in g["runs"]}


def summarize(sweeps_dir: str = SWEEPS_DIR, reports: Reports = Reports(), copy_runs: bool = True) -> dict:
    out = reports.summary
    fresh = {p.name: p for p in sorted(resolve(sweeps_dir).glob("*__*")) if p.is_dir()}
    committed = {p.name: p for p in sorted(reports.sweeps.glob("*__*")) if p.is_dir() and p.name not in fresh}
    groups = [g for g in (group(p) for p in {**fresh, **committed}.values()) if g]
    groups.sort(key=lambda g: g["group"])
    if not groups:
        raise RunNotFound(f"no finished sweep runs under {resolve(sweeps_dir)}: run `make sweep` first "
                          f"(the committed {out} is left as it is)")
    before = _previous(out)
    for g in groups:
        runs = g.pop("_runs")
        if g["group"] not in fresh:  # committed copies: their file times are checkout times, not finish times
            for row in g["runs"]:
                row["finished"] = before.get((g["group"], row["seed"]), row["finished"])
        if copy_runs and g["group"] in fresh:
            kept = {run.dir.name for run in runs}  # a fresh group replaces its committed copy whole
            for stale in reports.sweep(g["group"]).glob("*"):
                if stale.is_dir() and stale.name not in kept:
                    shutil.rmtree(stale)
            for run in runs:
                for f in (*RUN_FILES, DIGESTS):   # digests.json where the run wrote one: for the reproduction check
                    copy = reports.sweep(g["group"]) / run.dir.name / f
                    if f in RUN_FILES or (run.dir / f).is_file():
                        atomic_write_bytes(copy, (run.dir / f).read_bytes())
                    else:
                        copy.unlink(missing_ok=True)      # an older run's digest must not stand for this one
    by_name = {g["group"]: g for g in groups}
    summary = {"command": "python -m mnist_pairs summarize", "written": utc_now(), "groups": by_name}
    if (fast := speed.summary_record(by_name)) is not None:    # issue 22's recipe: rule commit, choice, confirmation
        summary["time_to_accuracy"] = fast
    if (plan := recipes.summary_record(by_name, reports)) is not None:   # issue 32's best and fast recipes
        # and each one's confirmation as the report judges it: the targets' verdicts, the paired Δ, the ensemble row
        plan["confirmations"] = {name: recipes.confirmation_facts(by_name, name, reports) for name in recipes.CONFIRM}
        summary["recipes"] = plan
    write_json(out, summary)
    return summary
