"""The reproduction check of the report's last section: a fresh study run against the committed
multi-seed group of its configuration (the 95 % prediction interval for one new run) and against
the committed run of the same training seed (equal or not, metric for metric)."""
from __future__ import annotations

from ..stats import prediction_interval


def environment_key(env: dict) -> tuple:
    """What must match for two runs to be expected to agree bit for bit."""
    return (env.get("cpu"), env.get("device"), env.get("gpu"), env.get("precision"), env.get("torch"),
            env.get("torch_threads"))


REPRO_KEYS = (("heldout_acc", "best_heldout"), ("test_acc", "best_test"), ("confirm_acc", "best_confirm"))


def repro_check(fresh: dict, group: dict) -> dict | None:
    """This machine's fresh run against the committed multi-seed distribution: inside or outside
    the 95 % prediction interval for one new run, and by how much (held-out, test, and
    confirmation accuracy where both have it). If the group has a run of the same training seed,
    also whether the fresh run's metrics equal that run's exactly."""
    n = group["n_runs"]
    if n < 2:
        return None
    out = {"n": n, "group": group["group"], "keys": []}
    for key, result in REPRO_KEYS:
        if result not in fresh["results"] or group["mean"].get(key) is None or group["sd"].get(key) is None:
            continue
        value = fresh["results"][result]["acc"]
        m, sd = group["mean"][key], group["sd"][key]
        lo, hi = prediction_interval(m, sd, n)
        out[key] = {"value": value, "mean": m, "lo": lo, "hi": hi, "inside": lo <= value <= hi,
                    "off_by": 0.0 if lo <= value <= hi else (value - hi if value > hi else value - lo)}
        out["keys"].append(key)
    envs = {environment_key(r | {"device": r["device"]}) for r in group["runs"]}
    out["same_environment"] = all(r["cpu"] == fresh["env"]["cpu"] and r["precision"] == fresh["env"]["precision"]
                                  and r["torch"] == fresh["env"]["torch"] for r in group["runs"])
    out["sweep_envs"] = len(envs)
    twin = next((r for r in group["runs"] if r["seed"] == fresh["cfg"]["seed"]), None)
    if twin is not None:
        # the weights' sha256 where both runs recorded it: "same", "different", or None (not recorded)
        weights = _weights(fresh.get("weights_sha256"), twin.get("weights_sha256"))
        same_numbers = all(out[k]["value"] == twin[k] for k in out["keys"]) and \
            fresh["results"]["best_val"]["acc"] == twin["val_acc"]
        out["twin"] = {"seed": twin["seed"], "epoch": twin.get("selected_epoch"), "fresh_epoch": fresh["results"].get("selected_epoch"),
                       # the accuracies compared, the committed run's and this machine's
                       "pairs": [{"key": k, "committed": twin[k], "fresh": out[k]["value"]} for k in out["keys"]],
                       "weights": weights, "identical": same_numbers and weights != "different",
                       # a shared-encoding run that finished before the determinism fix cannot be rebuilt bit for bit
                       "before_fix": group.get("config", {}).get("pairing") == "shared" and twin["finished"] < DETERMINISM_FIX["time"]}
    return out


def _weights(fresh: str | None, committed: str | None) -> str | None:
    return None if not fresh or not committed else "same" if fresh == committed else "different"


def is_committed_run(run: dict, group: dict | None) -> bool:
    """Whether a published run is one of the group's runs itself (same seed, same start time),
    not a fresh run of the same configuration."""
    return bool(group) and any(r["seed"] == run["cfg"]["seed"] and r.get("started")
                               and r["started"] == run["env"].get("started") for r in group["runs"])


# The commit that made shared-encoding training reproducible (train.py: `index_select` where indexing
# `e[ia]` had a backward that summed in thread order), with its commit time (UTC, `git log -1 --format=%cI`).
DETERMINISM_FIX = {"commit": "984140b", "time": "2026-11-30T05:29:23"}


def before_determinism_fix(groups: dict) -> list[str]:
    """Shared-encoding groups with runs that finished before DETERMINISM_FIX: a rerun of one of
    their seeds on the same machine need not give the same numbers."""
    return sorted(name for name, g in groups.items() if g.get("config", {}).get("pairing") == "shared"
                  and any(r["finished"] < DETERMINISM_FIX["time"] for r in g["runs"]))
