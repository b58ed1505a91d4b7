"""Pair metrics (metrics.py) and the study's statistics (stats.py) against values worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_pairs.metrics import accuracy_at, choose_threshold, confusion, hardest_errors, pair_metrics
from mnist_pairs.stats import image_bootstrap_ci, interval, paired, prediction_interval, t95


def test_metrics_against_hand_computed_values():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    m = pair_metrics(logits, y)
    expected_loss = float(np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(1.0)),
                                   np.log1p(np.exp(0.5)), np.log1p(np.exp(-3.0))]))
    assert abs(m["loss"] - expected_loss) < 1e-6
    assert m["acc"] == 0.5
    assert m["auc"] == 0.75  # positives (2, -1) vs negatives (0.5, -3): 3 of 4 orderings right
    assert confusion(logits, y).tolist() == [[1, 1], [1, 1]]
    assert hardest_errors(logits, y).tolist() == [1, 2]  # sigmoid(-1)=.27 is further from .5 than sigmoid(.5)=.62


def test_threshold_is_chosen_by_accuracy_with_ties_towards_half():
    y = np.array([0, 0, 1, 1])
    logits = np.log(np.array([0.1, 0.3, 0.7, 0.9]) / (1 - np.array([0.1, 0.3, 0.7, 0.9])))
    assert choose_threshold(logits, y) == 0.5  # every threshold in (0.3, 0.7) is perfect: the one closest to 0.5
    shifted = np.log(np.array([0.1, 0.6, 0.7, 0.9]) / (1 - np.array([0.1, 0.6, 0.7, 0.9])))
    t = choose_threshold(shifted, y)
    assert 0.6 <= t < 0.7 and accuracy_at(shifted, y, t) == 1.0 and accuracy_at(shifted, y, 0.5) == 0.75


def test_image_bootstrap_is_wider_than_a_pair_bootstrap_when_images_repeat():
    rng = np.random.default_rng(0)
    n_images, n_pairs = 50, 4000
    a, b = rng.integers(0, n_images, n_pairs), rng.integers(0, n_images, n_pairs)
    hard = rng.random(n_images) < 0.2                       # errors cluster on a few hard images
    correct = ~(hard[a] | hard[b]) | (rng.random(n_pairs) < 0.5)
    lo, hi = image_bootstrap_ci(correct, a, b, n_images, reps=400)
    assert lo < correct.mean() < hi
    pair_half = 1.96 * np.sqrt(correct.mean() * (1 - correct.mean()) / n_pairs)
    assert (hi - lo) / 2 > 2 * pair_half  # shared images make the pair-level interval far too narrow


def test_intervals_against_hand_computed_values():
    st = interval([0.980, 0.981, 0.982])            # mean 0.981, sd 0.001, t(0.975, 2) = 4.3027
    assert st["mean"] == pytest.approx(0.981) and st["sd"] == pytest.approx(0.001) and st["n"] == 3
    assert st["ci95"] == pytest.approx([0.981 - 4.302653 * 0.001 / 3 ** 0.5, 0.981 + 4.302653 * 0.001 / 3 ** 0.5])
    assert t95(5) == pytest.approx(2.776445) and np.isnan(t95(1))
    d = paired({0: 0.99, 1: 0.98, 2: 0.97, 9: 0.5}, {0: 0.98, 1: 0.975, 2: 0.96})   # seed 9 has no partner
    assert d["n"] == 3 and d["mean"] == pytest.approx((0.01 + 0.005 + 0.01) / 3)
    assert paired({0: 0.99}, {0: 0.98, 1: 0.97}) is None
    lo, hi = prediction_interval(0.981, 0.001, 3)   # one new run: sqrt(1 + 1/n) wider than the mean's
    assert hi - 0.981 == pytest.approx(4.302653 * 0.001 * (4 / 3) ** 0.5) and lo == pytest.approx(2 * 0.981 - hi)
