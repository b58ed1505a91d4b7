"""Time to 99.3 % (issue 22): the faster recipe chosen on validation pairs, and its confirmation.

    facts = report_facts(groups, reports)    # everything the report's section 6 says about it

The rule is docs/plans/time_to_accuracy.md, registered in PLAN_COMMIT before any candidate ran;
`choose` applies it to the summary's candidate groups (validation accuracy and training seconds
only). The confirmation is benchmarks/bench_time_to_accuracy.py on fresh seeds, once per precision
path: each path's runs form its summary group (CONFIRM) and its JSON holds the wall times and the verdict.
"""
from __future__ import annotations

import json
import math

from ..paths import Reports

PLAN_FILE = "docs/plans/time_to_accuracy.md"
PLAN_COMMIT, PLAN_TIME = "3d1a523", "2026-11-30T11:58:06+00:00"   # `git log -1 --format=%cI 3d1a523`
CANDIDATES = ("fast_a__validation", "fast_b__validation", "fast_c__validation", "fast_d__validation")
SWEEP_SEEDS = (0, 1, 2)
ADMIT_VAL = 0.9930        # admissible: mean validation accuracy at least this
TIE = 0.05                # mean training seconds within 5 % of the fastest admissible one tie
# each precision path's confirmation runs (the same seeds, so one group per path): the fp32 path ran first
CONFIRM = {"fp32": "confirm_fast__validation", "bf16": "confirm_fast__validation_bf16"}
# the commit that wrote the rule's choice into params/confirm_fast.yaml, before the confirmation ran
CHOICE_COMMIT, CHOICE_TIME = "b566825", "2026-11-30T14:51:39+00:00"
CONFIRM_SEEDS = (10, 11, 12)
BENCH_FILES = {"bf16": "time_to_accuracy_bf16.json", "fp32": "time_to_accuracy_fp32.json"}
# the plan's target, as benchmarks/bench_time_to_accuracy.py judges it (tests/test_speed.py checks they agree)
TARGET = {"heldout_acc": 0.993, "every_seed_heldout_acc": 0.992, "wall_s": {"bf16": 120.0, "fp32": 300.0}}
# an EMA that still gives the first step's weights at least this share at the end has hardly left them
EMA_STUCK = 0.5
# the configurations the fast recipe is set beside: their confirmation groups (fresh seeds 5-9)
REFERENCES = ("confirm_seed__validation", "confirm_improved__validation")


def _interval(group: dict, key: str) -> dict:
    """{"mean", "ci95"} of one summary field of a group, the shape formats.pm prints."""
    return {"mean": group["mean"][key], "ci95": group["ci95"][key]}


def _machines(group: dict) -> dict:
    return {"precisions": sorted({r["precision"] for r in group["runs"]}), "cpus": sorted({r["cpu"] for r in group["runs"]})}


def candidate_row(group: dict, subset_images: int | None = None) -> dict:
    """One candidate's means. With the subset's training images known: its optimizer steps (one per
    shared-encoding batch) and, for weight EMA, the weight the averaged model still gives the first
    step's weights at the end (ema ** steps)."""
    cfg = group["config"]
    steps = None
    if subset_images and cfg.get("pairing") == "shared":
        fit = subset_images - (cfg["val_images"] if cfg["protocol"] == "validation" else 0)
        steps = cfg["epochs"] * math.ceil(fit / cfg["batch_size"])
    first = cfg["ema"] ** steps if steps and cfg["ema"] else None
    return {"steps": steps, "ema_first_weight": first, "ema_stuck": first is not None and first >= EMA_STUCK,
            "group": group["group"], "params": group["name"], "epochs": cfg["epochs"], "lr": cfg["lr"],
            "ema": cfg["ema"], "n_runs": group["n_runs"], "seeds": [r["seed"] for r in group["runs"]],
            "val": _interval(group, "val_acc"), "heldout": _interval(group, "heldout_acc"),
            "train_s": group["mean"]["train_seconds"], "admissible": group["mean"]["val_acc"] >= ADMIT_VAL,
            "started": sorted(r["started"] for r in group["runs"] if r.get("started")), **_machines(group)}


def choose(groups: dict, subset_images: int | None = None) -> dict:
    """The plan's rule on the candidate groups: {"rows", "chosen" (a group name or None), "why"}.
    Nothing is chosen until every candidate has its sweep seeds."""
    rows = [candidate_row(groups[name], subset_images) for name in CANDIDATES if name in groups]
    complete = len(rows) == len(CANDIDATES) and all(sorted(r["seeds"]) == list(SWEEP_SEEDS) for r in rows)
    if not complete:
        return {"rows": rows, "chosen": None, "why": "incomplete"}
    admissible = [r for r in rows if r["admissible"]]
    if admissible:
        fastest = min(r["train_s"] for r in admissible)
        ties = [r for r in admissible if r["train_s"] <= fastest * (1 + TIE)]
        return {"rows": rows, "chosen": max(ties, key=lambda r: r["val"]["mean"])["group"], "why": "fastest_admissible"}
    return {"rows": rows, "chosen": max(rows, key=lambda r: r["val"]["mean"])["group"], "why": "none_admissible"}


def reference_row(group: dict) -> dict:
    secs = [r["train_seconds"] for r in group["runs"]]
    return {"group": group["group"], "model": group["model"], "params": group["params"],
            "reaches_target": group["mean"]["heldout_acc"] >= TARGET["heldout_acc"], "lr": group["config"]["lr"],
            "epochs": group["config"]["epochs"], "seeds": [r["seed"] for r in group["runs"]],
            "heldout": _interval(group, "heldout_acc"), "train_s_min": min(secs), "train_s_max": max(secs),
            **_machines(group)}


def _plan_first(rows: list[dict]) -> bool:
    """Every candidate run recorded its start, and each started after the plan's commit."""
    started = [t for r in rows for t in r["started"]]
    return bool(started) and len(started) == sum(r["n_runs"] for r in rows) and min(started) > PLAN_TIME[:19]


def summary_record(groups: dict) -> dict | None:
    """What reports/summary.json keeps of the recipe: its plan and rule commit, the choice, the
    params files and the confirmation group (None before any candidate ran)."""
    choice = choose(groups)
    if not choice["rows"]:
        return None
    return {"plan": PLAN_FILE, "rule_commit": PLAN_COMMIT, "rule_time": PLAN_TIME,
            "candidates": list(CANDIDATES), "rule_precedes_runs": _plan_first(choice["rows"]),
            "chosen": choice["chosen"], "why": choice["why"],
            "recipe_params": f"params/{choice['chosen'].split('__')[0]}.yaml" if choice["chosen"] else None,
            "confirm_params": "params/confirm_fast.yaml", "choice_commit": CHOICE_COMMIT, "choice_time": CHOICE_TIME,
            "confirmation_groups": {path: name if name in groups else None for path, name in CONFIRM.items()},
            "confirm_seeds": list(CONFIRM_SEEDS), "benchmarks": {k: f"reports/benchmarks/{v}" for k, v in BENCH_FILES.items()}}


def report_facts(groups: dict, reports: Reports, subset_images: int | None = None) -> dict | None:
    """Everything the report says about time to accuracy, or None before any candidate ran.
    subset_images: the fixed subset's training images (the validation images are taken from them)."""
    choice = choose(groups, subset_images)
    if not choice["rows"]:
        return None
    benches = {path: json.loads(f.read_text()) for path, name in BENCH_FILES.items()
               if (f := reports.benchmarks / name).is_file()}
    confirms = {path: groups[name] for path, name in CONFIRM.items() if name in groups}
    for path, b in benches.items():
        b["wall_range"] = b["wall_s"]["ci95"]                 # the 95 % interval of the mean wall seconds
        b["below_floor"] = [r["seed"] for r in b["runs"] if r["heldout_acc"] < b["target"]["every_seed_heldout_acc"]]
        b["confirm"] = confirms.get(path)                      # this path's confirmation group
        # its runs recorded a CPU without native bf16, and no ISA cap imitated one
        same = [r for r in b["confirm"]["runs"] if r["precision"] == b["precision"]] if b["confirm"] else []
        b["no_native_bf16"] = bool(same) and not b["isa_caps"] and all(r.get("cpu_native_bf16") is False for r in same)
    verdict = "missed" if any(not b["met"] for b in benches.values()) else \
        "met" if benches and len(benches) == len(BENCH_FILES) else "open"
    chosen = next((r for r in choice["rows"] if r["group"] == choice["chosen"]), None)
    references = [reference_row(groups[g]) for g in REFERENCES if g in groups]
    started = [s for r in choice["rows"] for s in r["started"]]
    confirm_started = [r.get("started") for g in confirms.values() for r in g["runs"]]
    return {"plan_file": PLAN_FILE, "plan_commit": PLAN_COMMIT, "plan_time": PLAN_TIME[:19].replace("T", " "),
            "first_started": min(started).replace("T", " ") if started else None,
            "plan_first": _plan_first(choice["rows"]),
            "admit_val": ADMIT_VAL, "tie": TIE, "target": TARGET, "sweep_seeds": list(SWEEP_SEEDS), **choice,
            "confirm": next(iter(confirms.values()), None),   # the recipe's settings (the same on every path)
            "choice_commit": CHOICE_COMMIT, "choice_time": CHOICE_TIME[:19].replace("T", " "),
            "choice_first": bool(confirm_started) and all(t and t > CHOICE_TIME[:19] for t in confirm_started),
            "confirm_seeds_fresh": not any(r["seed"] in CONFIRM_SEEDS for name, g in groups.items()
                                           if name not in CONFIRM.values() for r in g["runs"]),
            "benches": benches, "missing_paths": [p for p in BENCH_FILES if p not in benches], "verdict": verdict,
            "bench_seeds": sorted({s for b in benches.values() for s in b["seeds"]}),   # over the measured paths
            "same_seeds": len(benches) > 1 and len({tuple(b["seeds"]) for b in benches.values()}) == 1,
            "chosen_row": chosen, "chosen_short_by": max(ADMIT_VAL - chosen["val"]["mean"], 0.0) if chosen else None,
            "references": references, "improved_ref": next((r for r in references if r["group"] == REFERENCES[1]), None)}
