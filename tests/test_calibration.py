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


@pytest.mark.skipif(not (REPORTS_DIR / K.PUBLISHED_JSON).is_file(), reason="no committed calibration of the published runs")
def test_committed_published_calibration_is_recomputed_from_the_published_runs(tmp_path, mnist_root):
    """reports/calibration_published.json: each published run's own temperature (fitted on its validation
    pairs) and held-out ECE before and after, from the run's committed scores.npz."""
    import shutil

    committed = json.loads((REPORTS_DIR / K.PUBLISHED_JSON).read_text())
    for name in committed["runs"]:
        shutil.copytree(REPORTS_DIR / "runs" / name, tmp_path / "runs" / name)
    again = K.calibrate_published(Reports(tmp_path))
    assert again == committed
    assert json.loads((tmp_path / K.PUBLISHED_JSON).read_text()) == committed
    for name, row in committed["runs"].items():
        run = Run.open(REPORTS_DIR / "runs" / name)
        targets = {k: s.y.numpy() for k, s in load_data(run.cfg, log=lambda m: None).sets.items()}
        z = run.scores()
        assert row["temperature"] == pytest.approx(K.fit_temperature(z["best_val"], targets["val"]))
        assert row["heldout_ece"] == pytest.approx(K.ece(z["best_heldout"], targets["heldout"]))
        assert row["heldout_ece_scaled"] == pytest.approx(K.ece(z["best_heldout"], targets["heldout"], row["temperature"]))


def test_published_calibration_leaves_out_runs_without_validation_scores(tmp_path):
    """A run scored without validation pairs (test protocol) has no temperature to fit: left out, and
    with no run left nothing is written."""
    (tmp_path / "runs" / "seed_siamese").mkdir(parents=True)
    np.savez(tmp_path / "runs" / "seed_siamese" / "scores.npz", best_test=np.zeros(4), best_heldout=np.zeros(4))
    assert K.calibrate_published(Reports(tmp_path), {"siamese": "seed_siamese"}) is None
    assert not (tmp_path / K.PUBLISHED_JSON).exists()
