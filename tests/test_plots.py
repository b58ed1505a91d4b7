"""Every figure draws, with Chinese text and no missing glyph."""
from __future__ import annotations

import torch

from mnist_pairs import plots
from mnist_pairs.metrics import confusion, curves
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


def test_seed_reference_table_is_the_published_one():
    assert len(SEED_HISTORY) == 25 and SEED_HISTORY[23]["test_acc"] == 0.9880 and SEED_HISTORY[0]["train_loss"] == 0.6064
