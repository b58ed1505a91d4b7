"""Are the model's probabilities honest? ECE and temperature scaling fitted on validation.

    python -m mnist_pairs calibrate     # reports/calibration.json + reports/figures/calibration/
    calibrate_published()               # reports/calibration_published.json: each published run (the report calls it)

It reads the sweep's run folders (experiments/sweeps/seed_siamese__validation/seed*/) and
copies their scores.npz beside the files summary.json copied (reports/sweeps/…), so that the
committed numbers can be recomputed from committed files (`calibrate("reports/sweeps", …)`).

For every run of a validation-protocol sweep group, from its saved scores (scores.npz: the
selected checkpoint's logits): one temperature T fitted on the validation pairs (minimum
negative log-likelihood of sigmoid(logit / T)), then the expected calibration error (ECE,
15 equal-width bins of the predicted class's confidence) and the NLL on the test and
held-out pairs before and after. Means and 95 % intervals are over training seeds.
Temperature scaling never changes a decision at threshold 0.5 (sign of the logit).
"""
from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from ..errors import RunNotFound
from ..metrics import probability
from ..paths import SWEEPS_DIR, Reports, atomic_write_bytes, resolve
from ..stats import interval
from ..runs import Run, write_json

BINS = 15
SETS = ("test", "heldout")
PUBLISHED_JSON = "calibration_published.json"   # calibrate_published(), under reports/


def nll(logits, y, t: float = 1.0) -> float:
    z = np.asarray(logits, dtype=np.float64) / t
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))     # BCE with logits, stable


def reliability(logits, y, t: float = 1.0, bins: int = BINS) -> dict:
    """Per confidence bin of the predicted class: mean confidence, accuracy and pair count."""
    p = probability(logits, t)
    conf = np.maximum(p, 1 - p)
    correct = (p > 0.5) == np.asarray(y).astype(bool)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    n = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, conf, minlength=bins) / np.maximum(n, 1)
    acc = np.bincount(which, correct, minlength=bins) / np.maximum(n, 1)
    return {"edges": edges.tolist(), "confidence": mean_conf.tolist(), "accuracy": acc.tolist(), "count": n.tolist()}


def ece(logits, y, t: float = 1.0, bins: int = BINS) -> float:
    r = reliability(logits, y, t, bins)
    n = np.asarray(r["count"])
    return float(np.sum(n * np.abs(np.asarray(r["accuracy"]) - np.asarray(r["confidence"]))) / n.sum())


def fit_temperature(logits, y) -> float:
    """The T > 0 minimising the NLL of sigmoid(logits / T) (bounded search on log T)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda log_t: nll(logits, y, math.exp(log_t)), bounds=(-4.0, 4.0), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


def calibrate_run(run: Run, targets: dict[str, np.ndarray], scores: dict[str, np.ndarray] | None = None) -> dict:
    scores = run.scores() if scores is None else scores
    t = fit_temperature(scores["best_val"], targets["val"])
    row = {"seed": run.cfg.seed, "temperature": t}
    for name in SETS:
        z, y = scores[f"best_{name}"], targets[name]
        row |= {f"{name}_ece": ece(z, y), f"{name}_ece_scaled": ece(z, y, t),
                f"{name}_nll": nll(z, y), f"{name}_nll_scaled": nll(z, y, t)}
    return row


def calibrate(sweeps_dir: str = SWEEPS_DIR, group: str = "seed_siamese__validation",
              reports: Reports = Reports(), copy_scores: bool = True) -> dict:
    from ..data import load_data

    runs = sorted((Run(p.parent) for p in resolve(sweeps_dir).glob(f"{group}/seed*/scores.npz")),
                  key=lambda r: r.cfg.seed)
    if len(runs) < 2:
        raise RunNotFound(f"calibration needs the finished runs of {resolve(sweeps_dir) / group} "
                          f"(found {len(runs)}): run `make sweep` first")
    data = load_data(runs[0].cfg, log=lambda m: None)           # fixed pairs depend on the data seed only
    targets = {k: s.y.numpy() for k, s in data.sets.items()}
    scores = [r.scores() for r in runs]
    rows = [calibrate_run(r, targets, s) for r, s in zip(runs, scores)]
    keys = [k for k in rows[0] if k != "seed"]
    spread = {k: interval([r[k] for r in rows]) for k in keys}
    first = scores[0]
    result = {"command": "python -m mnist_pairs calibrate", "written": datetime.now().isoformat(timespec="seconds"),
              "group": group, "bins": BINS, "n_runs": len(rows), "runs": rows,
              "mean": {k: st["mean"] for k, st in spread.items()}, "ci95": {k: st["ci95"] for k, st in spread.items()},
              "reliability_seed": runs[0].cfg.seed,
              "reliability": {f"{name}{tag}": reliability(first[f"best_{name}"], targets[name], t)
                              for name in ("heldout",)
                              for tag, t in (("", 1.0), ("_scaled", rows[0]["temperature"]))}}
    write_json(reports.calibration, result)
    if copy_scores:  # the scores behind every row, beside the run files summary.json copied
        for r in runs:
            atomic_write_bytes(reports.sweep(group) / r.dir.name / "scores.npz", (r.dir / "scores.npz").read_bytes())
    return result


def calibrate_published(reports: Reports = Reports(), published: dict[str, str] | None = None) -> dict | None:
    """Each published run (paths.PUBLISHED) calibrated on its own saved scores (calibrate_run: T fitted on
    its validation pairs, ECE and NLL before and after on the test and held-out pairs), with its held-out
    reliability before and after; written to reports/calibration_published.json. Runs without validation
    scores (test protocol) are left out; None (nothing written) when no run has them."""
    from ..data import load_data
    from ..paths import PUBLISHED

    rows = {}
    for role, name in (published or PUBLISHED).items():
        folder = reports.run(name)
        if not (folder / "scores.npz").is_file():
            continue
        run = Run(folder)
        scores = run.scores()
        if "best_val" not in scores:
            continue
        targets = {k: s.y.numpy() for k, s in load_data(run.cfg, log=lambda m: None).sets.items()}
        row = calibrate_run(run, targets, scores)
        rows[name] = {"role": role, **row,
                      "reliability": {f"heldout{tag}": reliability(scores["best_heldout"], targets["heldout"], t)
                                      for tag, t in (("", 1.0), ("_scaled", row["temperature"]))}}
    if not rows:
        (reports.root / PUBLISHED_JSON).unlink(missing_ok=True)   # no stale numbers beside the runs
        return None
    result = {"command": "python -m mnist_pairs study --report-only", "bins": BINS, "runs": rows}
    write_json(reports.root / PUBLISHED_JSON, result)
    return result
