"""What the report's abstract and main sections conclude, decided here from the study's files
(the template only words it): where the seed's number falls, which of the seed's choices matter,
the improved model's cost, and which precision a run used and why.

    place = seed_place(groups["seed_siamese__test"], 0.9895)
    m = matters(ablation_rows(groups))        # {"worse": [...], "better": [...], "unclear": [...]}
"""
from __future__ import annotations

import math

ROBUST_LIMIT_PP = 1.5   # a perturbation "holds up" if it costs at most this many points of accuracy against clean pairs
ROBUST_NEAR_PP = 0.1    # a row this close to the limit (either side) is flagged: one run cannot place it on a side
# Perturbations the picture conversion itself undoes before the model sees the image (serve/images.py
# load_digit: inverts light-on-dark pictures, crops to the ink, rescales it to MNIST's 20-pixel box and
# centres it): their rows test the conversion, not the model, and stay out of the verdict.
NEUTRALISED = ("inverted", "off_centre", "scale_0.6", "scale_1.4")


def seed_place(test_group: dict | None, seed_acc: float) -> dict | None:
    """The seed's one number among the runs that repeat its protocol (best test accuracy, test-selected):
    how many runs reach it, their maximum, and its z-score. None with fewer than 2 runs."""
    if not test_group or test_group["n_runs"] < 2:
        return None
    xs = [r["best_test_acc"] for r in test_group["runs"]]
    m, sd = test_group["mean"]["best_test_acc"], test_group["sd"]["best_test_acc"]
    return {"n": len(xs), "reached": sum(x >= seed_acc for x in xs), "max": max(xs),
            "z": (seed_acc - m) / sd if sd else math.nan, "gap": m - seed_acc}


def matters(rows: list[dict], key: str = "heldout_acc") -> dict:
    """The seed's own choices (ablation rows that are not the project's levers), by the paired Δ of
    `key`: those whose 95 % interval lies below 0 (removing the choice hurts; most first), above 0,
    and those the seeds cannot tell from 0."""
    seed_rows = [r for r in rows if r["delta"] and not r["lever"] and r["delta"].get(key)]
    by = lambda r: r["delta"][key]["mean"]
    clear = lambda r: r["sure"].get(key)
    return {"worse": sorted((r for r in seed_rows if clear(r) and by(r) < 0), key=by),
            "better": sorted((r for r in seed_rows if clear(r) and by(r) > 0), key=by, reverse=True),
            "unclear": [r for r in seed_rows if not clear(r)], "key": key,
            "seed_counts": sorted({r["group"]["n_runs"] for r in seed_rows})}


def all_above(group: dict | None, base: dict | None, key: str = "heldout_acc") -> bool:
    """Whether every run of `group` scores above every run of `base`."""
    return bool(group and base) and min(r[key] for r in group["runs"]) > max(r[key] for r in base["runs"])


def best_by_validation(rows: list[dict]) -> dict | None:
    """The ablation row with the highest mean validation accuracy."""
    return max(rows, key=lambda r: r["group"]["mean"]["val_acc"]) if rows else None


def interval_holds(group: dict, key: str, value: float) -> bool:
    lo, hi = group["ci95"][key]
    return lo <= value <= hi


def precision_reason(env: dict) -> str:
    """Why a run used its precision: "gpu", "native_bf16" (bf16 autocast on a CPU with native
    bf16), "no_bf16" (fp32 on a CPU without it, or with oneDNN capped below it), else "other"."""
    if env.get("device") != "cpu":
        return "gpu"
    if env.get("cpu_native_bf16") and env.get("precision") == "bf16":
        return "native_bf16"
    if not env.get("cpu_native_bf16") and env.get("precision") == "fp32":
        return "no_bf16"
    return "other"


def temperature_side(calibration: dict | None) -> str | None:
    """"over" if the fitted temperature's interval lies above 1 (probabilities over-confident),
    "under" if below 1, None if it holds 1."""
    if not calibration:
        return None
    lo, hi = calibration["ci95"]["temperature"]
    return "over" if lo > 1 else "under" if hi < 1 else None


def rank_in(run: dict | None, group: dict | None, key: str = "heldout_acc") -> dict | None:
    """Where a published run of the group (same seed) ranks on `key` among the group's runs (1 = highest);
    `tied`: how many other runs have exactly its score."""
    if not run or not group:
        return None
    mine = next((r for r in group["runs"] if r["seed"] == run["cfg"]["seed"]), None)
    if mine is None:
        return None
    return {"rank": 1 + sum(r[key] > mine[key] for r in group["runs"]), "n": len(group["runs"]),
            "tied": sum(r[key] == mine[key] for r in group["runs"]) - 1}


def judged(out: dict | None, limit_pp: float = ROBUST_LIMIT_PP, near_pp: float = ROBUST_NEAR_PP) -> dict | None:
    """serve.robustness.measure()'s result with the verdict per row: `holds` if it costs at most limit_pp points
    against the clean conversion, `neutralised` if the conversion undoes it (NEUTRALISED: no verdict), `near`
    if within near_pp of the limit. Per run: the rows that test the model (`tested`), those that do not hold
    (`failing`), those near the limit, and the worst tested row."""
    if not out:
        return None
    runs = {}
    tested = [n for n in out["perturbations"] if n != "clean" and n not in NEUTRALISED]
    for k, r in out["runs"].items():
        rows = {n: v | {"holds": v["drop_pp"] <= limit_pp, "neutralised": n in NEUTRALISED,
                        "near": n in tested and abs(v["drop_pp"] - limit_pp) <= near_pp} for n, v in r["rows"].items()}
        runs[k] = r | {"rows": rows, "tested": tested, "failing": [n for n in tested if not rows[n]["holds"]],
                       "near": [n for n in tested if rows[n]["near"]],
                       "worst": max(tested, key=lambda n: rows[n]["drop_pp"])}
    return out | {"limit_pp": limit_pp, "near_pp": near_pp, "runs": runs,
                  "neutralised": [n for n in out["perturbations"] if n in NEUTRALISED]}


def setup(group: dict | None) -> dict | None:
    """The CPUs and training precisions of a group's runs (their env.json, as summary.json copied them)."""
    if not group:
        return None
    return {"cpus": sorted({r["cpu"] for r in group["runs"]}), "precisions": sorted({r["precision"] for r in group["runs"]})}


def finished_groups(finished_before: dict[str, list[int]], groups: dict) -> dict:
    """Of the groups with runs finished before a commit (timeline's `finished_before`): those whose every
    run had finished (`complete`) and those with only some of their seeds finished (`partial`: group -> seeds)."""
    complete = [g for g, seeds in finished_before.items()
                if g in groups and set(seeds) == {r["seed"] for r in groups[g]["runs"]}]
    return {"complete": complete, "partial": {g: s for g, s in finished_before.items() if g not in complete}}


def gap(delta: dict | None) -> dict | None:
    """A paired Δ worded without a sign: `higher` (its mean above 0) and the size with the 95 % half-width."""
    if not delta:
        return None
    m, (lo, hi) = delta["mean"], delta["ci95"]
    return {"higher": m > 0, "text": f"{abs(100 * m):.2f} ± {100 * (hi - lo) / 2:.2f}"}


def retrieval_misses(retrieval: dict | None) -> list[dict] | None:
    """The retrieval figure's rows (analysis.retrieval) whose best `k` matches include another digit:
    per such match the query's digit, the rank (1 = best) and the digit found. None when there is no figure."""
    if not retrieval:
        return None
    out = []
    for q, row in zip(retrieval["query_digits"], retrieval["match_digits"]):
        out += [{"query": q, "rank": i + 1, "digit": d} for i, d in enumerate(row[:retrieval["k"]]) if d != q]
    return out
