"""Every figure draws, with Chinese text and no missing glyph."""
from __future__ import annotations

import numpy as np
import torch

from mnist_pairs import plots
from mnist_pairs.metrics import (accuracy_at, choose_threshold, confusion, curves, hardest_errors,
                                 image_bootstrap_ci, pair_metrics)
from mnist_pairs.seed_reference import SEED_HISTORY


def test_every_figure_renders_chinese_without_missing_glyphs(tmp_path, subset, no_glyph_warnings):
    name = plots.setup_style()
    assert name == "Noto Sans SC"
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.ones(100), torch.zeros(100)])
    logits = (y * 2 - 1) * 3 + torch.randn(200, generator=g) * 2
    c = curves(logits, y)
    hist = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.1 / e, "train_acc": 1 - 0.1 / e,
             "test_acc": 1 - 0.12 / e, "test_auc": 1 - 0.01 / e, "val_loss": 1.05 / e, "val_acc": 1 - 0.11 / e,
             "val_auc": 1 - 0.012 / e} for e in range(1, 6)]
    idx = torch.arange(10)
    figs = [plots.plot_curves(hist), plots.plot_curves_vs_seed(hist, SEED_HISTORY), plots.plot_confusion(confusion(logits, y)),
            plots.plot_pairs(subset.test_images.numpy(), idx, idx.flip(0), y[:10], subset.test_labels,
                             torch.sigmoid(logits[:10])),
            plots.plot_class_distribution(subset.train_labels, subset.test_labels),
            plots.plot_pair_balance({"训练": {"same": 5, "different": 5}, "测试": {"same": 2, "different": 2}}),
            plots.plot_roc_pr(c), plots.plot_threshold(c, 0.45, "val"), plots.plot_score_hist(c)]
    for i, fig in enumerate(figs):
        plots.save_figure(fig, tmp_path / f"{i}.png")  # rendering is where missing glyphs show up
    assert len(list(tmp_path.glob("*.png"))) == len(figs)


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


def test_seed_reference_table_is_the_published_one():
    assert len(SEED_HISTORY) == 25 and SEED_HISTORY[23]["test_acc"] == 0.9880 and SEED_HISTORY[0]["train_loss"] == 0.6064


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
