"""Every figure draws, with Chinese text and no missing glyph."""
from __future__ import annotations

import numpy as np
import torch

from mnist_pairs import plots
from mnist_pairs.seed_reference import SEED_HISTORY, train_curve_gap
from mnist_pairs.metrics import confusion, curves, hardest_errors, pair_metrics


def test_every_figure_renders_chinese_without_missing_glyphs(tmp_path, subset, no_glyph_warnings):
    name = plots.setup_style()
    assert name == "Noto Sans SC"
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.ones(100), torch.zeros(100)])
    logits = (y * 2 - 1) * 3 + torch.randn(200, generator=g) * 2
    c = curves(logits, y)
    hist = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.1 / e, "train_acc": 1 - 0.1 / e,
             "test_acc": 1 - 0.12 / e, "test_auc": 1 - 0.01 / e} for e in range(1, 6)]
    idx = torch.arange(10)
    figs = [plots.plot_curves(hist), plots.plot_curves_vs_seed(hist, SEED_HISTORY), plots.plot_confusion(confusion(logits, y)),
            plots.plot_pairs(subset.test_images.numpy(), idx, idx.flip(0), y[:10], subset.test_labels,
                             torch.sigmoid(logits[:10])),
            plots.plot_class_distribution(subset.train_labels, subset.test_labels),
            plots.plot_pair_balance({"训练": {"same": 5, "different": 5}, "测试": {"same": 2, "different": 2}}),
            plots.plot_roc_pr(c), plots.plot_threshold(c), plots.plot_score_hist(c)]
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
    assert train_curve_gap(SEED_HISTORY) == 0.0
