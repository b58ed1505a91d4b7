"""ECE, reliability and temperature scaling: on logits with a known miscalibration, on a real
run's saved scores, and the committed reports/calibration.json against its committed scores."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_pairs.study import calibration as K
from mnist_pairs.data import load_data
from mnist_pairs.metrics import probability
from mnist_pairs.paths import REPORTS_DIR, Reports
from mnist_pairs.runs import Run


def overconfident(n: int = 200_000, scale: float = 3.0, seed: int = 0):
    """Labels drawn from true probabilities p; logits are logit(p) * scale (too confident)."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0.0, 2.0, n)
    y = rng.random(n) < 1 / (1 + np.exp(-true_logit))
    return true_logit * scale, y.astype(int)


def test_temperature_recovers_a_known_overconfidence_and_ece_falls():
    z, y = overconfident()
    t = K.fit_temperature(z, y)
    assert t == pytest.approx(3.0, rel=0.03)
    before, after = K.ece(z, y), K.ece(z, y, t)
    assert before > 0.05 and after < 0.01, (before, after)
    assert K.nll(z, y, t) < K.nll(z, y)


def test_reliability_counts_every_pair_once_and_ece_is_zero_when_calibrated():
    z, y = overconfident(scale=1.0)
    r = K.reliability(z, y)
    assert sum(r["count"]) == len(z) and len(r["count"]) == K.BINS
    assert K.ece(z, y) < 0.01
    assert K.ece(np.full(100, 5.0), np.zeros(100)) == pytest.approx(1 / (1 + np.exp(-5.0)), rel=1e-9)  # all wrong


def test_on_a_real_run_the_temperature_fitted_on_validation_lowers_validation_nll(mnist_root):
    run = Run.open(REPORTS_DIR / "runs" / "seed_siamese")
    targets = {k: s.y.numpy() for k, s in load_data(run.cfg, log=lambda m: None).sets.items()}
    row = K.calibrate_run(run, targets)
    scores = run.scores()
    assert K.nll(scores["best_val"], targets["val"], row["temperature"]) <= K.nll(scores["best_val"], targets["val"])
    assert 0 < row["heldout_ece"] < 0.1 and 0 < row["heldout_ece_scaled"] < 0.1
    # temperature scaling keeps every decision at 0.5
    z = scores["best_heldout"]
    assert ((probability(z) > 0.5) == (probability(z, row["temperature"]) > 0.5)).all()


@pytest.mark.skipif(not (REPORTS_DIR / "calibration.json").is_file(), reason="no committed calibration")
def test_committed_calibration_is_recomputed_from_committed_scores(tmp_path, mnist_root):
    committed = json.loads((REPORTS_DIR / "calibration.json").read_text())
    again = K.calibrate(str(REPORTS_DIR / "sweeps"), committed["group"], Reports(tmp_path),
                        copy_scores=False)
    assert again["runs"] == committed["runs"] and again["reliability"] == committed["reliability"]
