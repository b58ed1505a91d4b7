"""The `best` and `fast` recipes of issue 32, chosen by the rule registered before their runs.

    record = summary_record(groups, reports)     # what reports/summary.json keeps
    facts = report_facts(groups, reports)        # what the report says (None before any candidate ran)

The plan is docs/plans/best_and_fast.md (PLAN_COMMIT). Every candidate keeps the final weights of
its fixed schedule; validation pairs of training seeds 0-2 choose among a recipe's candidates
that are within its time budget on both precision paths. Held-out pairs are carried along for the
record and never read by `choose`.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..paths import Reports
from ..stats import interval
from .ablation import paired
from .labels_zh import RECIPE_GROUPS

PLAN_FILE = "docs/plans/best_and_fast.md"
PLAN_COMMIT, PLAN_TIME = "3c3cf6e", "2026-12-07T02:40:15+00:00"   # `git log -1 --format=%cI 3c3cf6e`
SWEEP_SEEDS = (0, 1, 2)
TIE = 0.0005                # mean validation accuracy within 0.05 pp of the highest counts as tied
PATHS = ("bf16", "fp32")
RECIPES = {
    "best": {"candidates": ("best_a__validation", "best_b__validation", "best_c__validation"),
             "budget_s": {"bf16": 600.0, "fp32": 1500.0}},
    "fast": {"candidates": ("fast_e__validation", "fast_f__validation"),
             "budget_s": {"bf16": 120.0, "fp32": 300.0}},
}
# each path's committed per-epoch seconds, process start to end (the time-to-accuracy benchmark of
# issue 22's recipe, the same model): what scales a candidate's epochs to the path it did not run on
PATH_BENCH = {"bf16": "time_to_accuracy_bf16.json", "fp32": "time_to_accuracy_fp32.json"}


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end[:19]) - datetime.fromisoformat(start[:19])).total_seconds()


def path_epoch_seconds(reports: Reports) -> dict[str, float]:
    """{path: mean wall seconds per epoch, process start to end} from the committed benchmarks."""
    out = {}
    for path, name in PATH_BENCH.items():
        f = reports.benchmarks / name
        if f.is_file():
            b = json.loads(f.read_text())
            out[path] = b["wall_s"]["mean"] / b["runs"][0]["epochs"]
    return out


def candidate_row(group: dict, budget_s: dict[str, float], per_epoch: dict[str, float]) -> dict:
    """One candidate: its validation mean (final weights at threshold 0.5), the run walls (the run's
    start to its results file) on the path it ran, and its epochs scaled to the other path."""
    cfg, runs = group["config"], group["runs"]
    ran = sorted({r["precision"] for r in runs})
    walls = [_seconds_between(r["started"], r["finished"]) for r in runs if r.get("started")]
    slowest = max(walls) if len(walls) == len(runs) else None
    scaled = {p: cfg["epochs"] * s for p, s in per_epoch.items() if p not in ran}
    checks = {p: slowest is not None and slowest <= budget_s[p] for p in ran if p in budget_s}
    checks |= {p: t <= budget_s[p] for p, t in scaled.items()}
    vals = [r["final_val_acc"] for r in runs]
    return {"group": group["group"], "params": group["name"], "epochs": cfg["epochs"], "lr": cfg["lr"],
            "ema": cfg["ema"], "checkpoint": cfg.get("checkpoint"), "n_runs": group["n_runs"],
            "seeds": [r["seed"] for r in runs], "val": interval(vals),
            "heldout": {"mean": group["mean"]["heldout_acc"], "ci95": group["ci95"]["heldout_acc"]},
            "ran_on": ran, "cpus": sorted({r["cpu"] for r in runs}), "slowest_s": slowest,
            "scaled_s": scaled, "budget_checks": checks,
            "within_budget": len(checks) == len(PATHS) and all(checks.values()),
            "started": sorted(r["started"] for r in runs if r.get("started"))}


def choose(groups: dict, recipe: str, reports: Reports = Reports()) -> dict:
    """The plan's rule for one recipe: {"rows", "chosen" (a group name or None), "why"}. Nothing is
    chosen until every candidate has its three sweep seeds."""
    spec = RECIPES[recipe]
    per_epoch = path_epoch_seconds(reports)
    rows = [candidate_row(groups[n], spec["budget_s"], per_epoch) for n in spec["candidates"] if n in groups]
    complete = len(rows) == len(spec["candidates"]) and all(sorted(r["seeds"]) == list(SWEEP_SEEDS) for r in rows)
    if not complete:
        return {"rows": rows, "chosen": None, "why": "incomplete"}
    within = [r for r in rows if r["within_budget"]]
    if not within:
        return {"rows": rows, "chosen": None, "why": "none_within_budget"}
    top = max(r["val"]["mean"] for r in within)
    tied = [r for r in within if r["val"]["mean"] >= top - TIE]
    chosen = min(tied, key=lambda r: (r["epochs"], bool(r["ema"]), -r["val"]["mean"]))
    return {"rows": rows, "chosen": chosen["group"], "why": "tie_fewer_epochs" if len(tied) > 1 else "highest_val"}


def plan_first(rows: list[dict]) -> bool:
    """Every candidate run recorded its start, and each started after the plan's commit."""
    started = [t for r in rows for t in r["started"]]
    return bool(started) and len(started) == sum(r["n_runs"] for r in rows) and min(started) > PLAN_TIME[:19]


def summary_record(groups: dict, reports: Reports = Reports()) -> dict | None:
    """What reports/summary.json keeps: the plan, and per recipe its candidates' rows and the choice
    (None before any candidate ran)."""
    choices = {name: choose(groups, name, reports) for name in RECIPES}
    if not any(c["rows"] for c in choices.values()):
        return None
    return {"plan": PLAN_FILE, "rule_commit": PLAN_COMMIT, "rule_time": PLAN_TIME, "sweep_seeds": list(SWEEP_SEEDS),
            "tie": TIE, "per_epoch_s": path_epoch_seconds(reports),
            "recipes": {name: {"candidates": list(RECIPES[name]["candidates"]), "budget_s": RECIPES[name]["budget_s"],
                               "rule_precedes_runs": plan_first(c["rows"]), "chosen": c["chosen"], "why": c["why"],
                               "rows": c["rows"]}
                        for name, c in choices.items()}}


# ----------------------------------------------------------------------- the confirmation (plan, "Confirmation")
# each recipe's confirmation: its params file (committed with the choice, before the first confirmation
# run), fresh training seeds, and the summary group of its runs per precision path. `fast` is timed from
# process start by benchmarks/bench_time_to_accuracy.py, one JSON per path.
CONFIRM = {
    "best": {"params": "params/confirm_best.yaml", "seeds": (13, 14, 15, 16, 17),
             "groups": {"fp32": "confirm_best__validation", "bf16": "confirm_best__validation_bf16"},
             # the seed configuration on the same seeds, its own group (params/confirm_best_seed.yaml):
             # the paired Δ on the confirmation set is taken against it
             "baseline": {"params": "params/confirm_best_seed.yaml", "group": "confirm_best_seed__validation"},
             # the five runs' mean logit (publish-ensemble), its own row: reports/runs/ensemble/ensemble.json
             "ensemble": "ensemble"},
    "fast": {"params": "params/confirm_fast_final.yaml", "seeds": (18, 19, 20),
             "groups": {"fp32": "confirm_fast_final__validation", "bf16": "confirm_fast_final__validation_bf16"},
             "benches": {"fp32": "time_to_accuracy_final_fp32.json", "bf16": "time_to_accuracy_final_bf16.json"}},
}
# the published model (plan, "What users get"): the `best` confirmation run on seed 13, named there before
# training; params/improved.yaml trains it again (make study) and reports/runs/improved is that run
PUBLISHED_RUN = {"group": "confirm_best__validation", "seed": 13, "params": "params/improved.yaml"}
# the commits that wrote each choice into its confirmation params file (None: not chosen yet)
CHOICE = {"best": ("ac67dfa", "2026-12-07T17:05:49+00:00"), "fast": ("833d691", "2026-12-07T05:45:52+00:00")}   # `git log -1 --format=%cI <commit>`
TARGETS = {"best": {"heldout_acc": 0.995, "every_seed_heldout_acc": 0.994, "ensemble_heldout_acc": 0.996},
           "fast": {"heldout_acc": 0.993, "every_seed_heldout_acc": 0.992, "wall_s": {"bf16": 120.0, "fp32": 300.0}}}


def trained_as(run: dict | None, group: dict | None) -> bool:
    """Whether a run (report.run_facts; its config.yaml as it ran: device and precision resolved) was
    trained and scored with every setting a summary group's runs used, its seed aside."""
    return bool(run and group) and all(run["cfg"].get(k) == v for k, v in group["config"].items())


def published_as_planned(run: dict | None, group: dict | None) -> bool:
    """Whether a published run is the plan's: its training seed, of a group that holds that seed's
    confirmation run, trained as that group's runs were."""
    return trained_as(run, group) and run["cfg"]["seed"] == PUBLISHED_RUN["seed"] and \
        any(r["seed"] == PUBLISHED_RUN["seed"] for r in group["runs"])


def fresh_seeds(groups: dict) -> bool:
    """No group outside the confirmations holds a run on one of their seeds (13-20)."""
    ours = {g for c in CONFIRM.values() for g in c["groups"].values()} | \
           {c["baseline"]["group"] for c in CONFIRM.values() if "baseline" in c}
    seeds = {s for c in CONFIRM.values() for s in c["seeds"]}
    return not any(r["seed"] in seeds for name, g in groups.items() if name not in ours for r in g["runs"])


def confirmation_facts(groups: dict, recipe: str, reports: Reports) -> dict:
    """One recipe's confirmation as the files hold it: per precision path its runs' held-out and
    confirmation-set figures, and for `fast` the benchmark's wall times and verdict."""
    spec, target = CONFIRM[recipe], TARGETS[recipe]
    paths = {}
    for path, name in spec["groups"].items():
        g = groups.get(name)
        bench_file = reports.benchmarks / spec["benches"][path] if "benches" in spec else None
        bench = json.loads(bench_file.read_text()) if bench_file and bench_file.is_file() else None
        if g is None and bench is None:
            continue
        heldout = [r["heldout_acc"] for r in g["runs"]] if g else []
        st = interval(heldout) if heldout else None
        row = {"group": name, **_group_facts(g),
               "lowest_seed_acc": min(heldout) if heldout else None,
               "mean_met": bool(heldout) and st["mean"] >= target["heldout_acc"],
               "short_by": max(target["heldout_acc"] - st["mean"], 0.0) if st else None,
               "interval_holds_target": bool(st) and st["ci95"][0] <= target["heldout_acc"] <= st["ci95"][1],
               "below_floor": [r["seed"] for r in g["runs"] if r["heldout_acc"] < target["every_seed_heldout_acc"]] if g else [],
               "floor_met": bool(heldout) and min(heldout) >= target["every_seed_heldout_acc"]}
        if "baseline" in spec and g is not None:
            row |= against_baseline(g, groups.get(spec["baseline"]["group"]), spec["seeds"])
        if bench is not None:
            walls = [r["wall_s"] for r in bench["runs"]]
            # the plan's time rule: every run within its path's budget (the benchmark's own verdict is on the mean)
            in_time = all(w <= target["wall_s"][path] for w in walls)
            row |= {"wall_s": bench["wall_s"], "walls": walls, "time_met": in_time,
                    "met": in_time and row["mean_met"] and row["floor_met"],
                    "bench": f"reports/benchmarks/{spec['benches'][path]}", "command": bench["command"]}
        else:
            row["met"] = row["mean_met"] and row["floor_met"] and row.get("delta_ok", True)
            # `best` is judged once it and the seed configuration hold every confirmation seed
            row["judged"] = row.get("delta_judged", True)
        paths[path] = row
    choice = CHOICE[recipe]
    confirm_cfgs = [groups[name]["config"] for name in spec["groups"].values() if name in groups]
    base = groups.get(spec["baseline"]["group"]) if "baseline" in spec else None
    started = [r.get("started") for name in spec["groups"].values() if name in groups for r in groups[name]["runs"]] + \
              [r.get("started") for r in (base["runs"] if base else [])]
    return {"params": spec["params"], "seeds": list(spec["seeds"]), "paths": paths,
            "baseline": {"params": spec["baseline"]["params"], "group": spec["baseline"]["group"], **_group_facts(base)}
            if "baseline" in spec else None,
            "ensemble": ensemble_row(reports, spec["ensemble"], target, spec["seeds"], set(spec["groups"].values()))
            if "ensemble" in spec else None,
            "missing_paths": [p for p in spec["groups"] if p not in paths], "target": target,
            "choice_commit": choice[0] if choice else None,
            "choice_time": choice[1][:19].replace("T", " ") if choice else None,
            # every confirmation run started after the commit that wrote the choice
            "choice_first": bool(choice) and bool(started) and all(t and t > choice[1][:19] for t in started),
            "no_confirm_set": bool(confirm_cfgs) and not any(c.get("confirm_pairs") for c in confirm_cfgs),
            "same_training_as_previous": same_training(groups.get(PREVIOUS[recipe]) if recipe in PREVIOUS else None,
                                                      confirm_cfgs[0] if confirm_cfgs else None)}


def _group_facts(g: dict | None) -> dict:
    """A confirmation group's seeds, CPUs, precisions, and held-out and confirmation-set intervals
    (the latter only when every run has a confirmation figure); empty while the group has no run."""
    runs = g["runs"] if g else []
    return {"seeds": [r["seed"] for r in runs], "cpus": sorted({r["cpu"] for r in runs}),
            "precisions": sorted({r["precision"] for r in runs}),
            # each run's training time as results.json records it (train_seconds: the epochs, not data
            # preparation or the final scoring)
            "train_s": [r["train_seconds"] for r in runs if r.get("train_seconds") is not None],
            "heldout": interval([r["heldout_acc"] for r in runs]) if runs else None,
            "confirm": interval([r["confirm_acc"] for r in runs])
            if runs and all(r.get("confirm_acc") is not None for r in runs) else None}


def against_baseline(g: dict, base: dict | None, seeds) -> dict:
    """The plan's third `best` target: the paired Δ (recipe − seed configuration, training seed by
    training seed) of accuracy on the confirmation set, its 95 % interval above 0, judged only once
    both groups hold every confirmation seed. The held-out Δ is reported beside it."""
    base = base or {"runs": []}
    delta = paired(g, base, "confirm_acc")
    both = sorted({r["seed"] for r in g["runs"] if r.get("confirm_acc") is not None} &
                  {r["seed"] for r in base["runs"] if r.get("confirm_acc") is not None})
    judged = delta is not None and both == sorted(seeds) and sorted(r["seed"] for r in g["runs"]) == sorted(seeds)
    return {"delta_confirm": delta, "delta_heldout": paired(g, base, "heldout_acc"),
            "delta_ok": judged and delta["ci95"][0] > 0, "delta_judged": judged, "delta_seeds": both}


def ensemble_row(reports: Reports, name: str, target: dict, seeds, groups: set[str]) -> dict | None:
    """The published ensemble (publish-ensemble's ensemble.json) as its own row: one model made of
    several runs (one figure per pair set, not a mean over seeds) beside the plan's aim. None until it
    exists; {"matches": False} while its members are not the confirmation's runs (one of its groups,
    its seeds) or it holds no held-out figures."""
    f = reports.run(name) / "ensemble.json"
    if not f.is_file():
        return None
    m = json.loads(f.read_text())
    same_runs = sorted(m.get("seeds", [])) == sorted(seeds) and \
        len({Path(src).parent.name for src in m.get("sources", [])}) == 1 and \
        all(Path(src).parent.name in groups for src in m.get("sources", []))
    if not same_runs or "heldout" not in m.get("sets", {}):
        return {"dir": f"reports/runs/{name}", "matches": False}
    h = m["sets"]["heldout"]
    return {"dir": f"reports/runs/{name}", "matches": True, "members": len(m["members"]), "seeds": m["seeds"],
            "threshold": m["threshold"], "sets": m["sets"], "heldout_acc": h["acc"],
            "heldout_low": h["ci95"][0] if h.get("ci95") else None, "heldout_high": h["ci95"][1] if h.get("ci95") else None,
            "aim": target["ensemble_heldout_acc"], "aim_met": h["acc"] >= target["ensemble_heldout_acc"],
            "short_by": max(target["ensemble_heldout_acc"] - h["acc"], 0.0)}


# the recipe each one continues (issue 22's fast recipe for `fast`), and the keys that do not change training
PREVIOUS = {"fast": "confirm_fast__validation"}
NOT_TRAINING = ("checkpoint", "num_threads", "confirm_pairs", "heldout_pairs", "device", "precision")


def same_training(previous: dict | None, cfg: dict | None) -> bool:
    """Whether a confirmation trains as the previous recipe's runs did (all but the checkpoint rule and
    what is scored or how many threads run it)."""
    if not previous or not cfg:
        return False
    old = previous["config"]
    return all(old.get(k) == v for k, v in cfg.items() if k not in NOT_TRAINING)


# the post-hoc observation that motivated the final-weights rule (seen before the plan, stated as such):
# the checkpoint picked on validation pairs against the same runs' final weights
POST_HOC_GROUPS = ("confirm_improved__validation", "lever_combined_e100__validation",
                   "confirm_fast__validation", "confirm_fast__validation_bf16")


def picked_vs_final(groups: dict) -> list[dict]:
    """Per group: mean held-out accuracy of the validation-picked checkpoint and of the final weights,
    the paired difference (final - picked) over seeds, and how many seeds the final weights did better."""
    rows = []
    for name in POST_HOC_GROUPS:
        g = groups.get(name)
        if g is None:
            continue
        picked = [r["heldout_acc"] for r in g["runs"]]
        final = [r["final_heldout_acc"] for r in g["runs"]]
        delta = interval([f - p for f, p in zip(final, picked)])
        rows.append({"group": name, "label": RECIPE_GROUPS[name], "seeds": [r["seed"] for r in g["runs"]],
                     "picked_last_seeds": [r["seed"] for r in g["runs"] if r["selected_epoch"] == g["config"]["epochs"]],
                     "epochs": g["config"]["epochs"], "delta_holds_zero": delta["ci95"][0] <= 0 <= delta["ci95"][1],
                     "picked_epochs": [r["selected_epoch"] for r in g["runs"]],
                     "picked": interval(picked)["mean"], "final": interval(final)["mean"],
                     "delta": delta,
                     "final_better": sum(f > p for f, p in zip(final, picked)), "n": len(picked)})
    return rows


def report_facts(groups: dict, reports: Reports = Reports()) -> dict | None:
    """Everything the report says about issue 32's recipes, or None before any candidate ran."""
    record = summary_record(groups, reports)
    if record is None:
        return None
    for name, rec in record["recipes"].items():
        rec["confirmation"] = confirmation_facts(groups, name, reports)
        rec["chosen_row"] = next((r for r in rec["rows"] if r["group"] == rec["chosen"]), None)
    started = [t for rec in record["recipes"].values() for r in rec["rows"] for t in r["started"]]
    rows = picked_vs_final(groups)
    return record | {"plan_time_text": PLAN_TIME[:19].replace("T", " "), "picked_vs_final": rows,
                     "all_deltas_hold_zero": bool(rows) and all(r["delta_holds_zero"] for r in rows),
                     "all_final_higher": bool(rows) and all(r["delta"]["mean"] > 0 for r in rows),
                     "pvf_seeds": [min(r["n"] for r in rows), max(r["n"] for r in rows)] if rows else None,
                     "pvf_epochs": [min(r["epochs"] for r in rows), max(r["epochs"] for r in rows)] if rows else None,
                     "val_images": next((groups[r["group"]]["config"]["val_images"] for r in rows), None),
                     "plan_first": all(rec["rule_precedes_runs"] for rec in record["recipes"].values() if rec["rows"]),
                     "first_started": min(started).replace("T", " ") if started else None,
                     "seeds_fresh": fresh_seeds(groups)}
