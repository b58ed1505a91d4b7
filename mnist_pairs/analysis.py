"""Evaluate a finished run's best checkpoint on the saved test pairs, and publish it.

    a = analyze("experiments/siamese_20261127_101500")
    a.figures()                    # {name: Figure}: confusion, ROC/PR, threshold, scores, errors
    a.save(folder, figures_root)   # folder/analysis.json + figures_root/<folder name>/*.png
    publish(a, "seed_siamese")     # reports/runs/seed_siamese/ (+ reports/figures/seed_siamese/)
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import plots
from .config import Config
from .metrics import confusion, curves, hardest_errors, pair_metrics
from .paths import REPORTS_DIR, atomic_write_text, resolve
from .seed_reference import SEED_HISTORY
from .train import PairData, autocast_dtype, evaluate, load_run, read_history

RUN_FILES = ("config.yaml", "history.json", "env.json", "best.pt")


@dataclass
class Analysis:
    run_dir: Path
    cfg: Config
    history: list[dict]
    best: dict                  # best.pt's metadata: epoch, test_acc, test_auc, test_loss
    logits: torch.Tensor        # (P,) logits of the best model on the test pairs
    data: PairData
    curves: dict = field(init=False)
    cm: np.ndarray = field(init=False)
    metrics: dict = field(init=False)
    _figures: dict | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.curves = curves(self.logits, self.data.test_y)
        self.cm = confusion(self.logits, self.data.test_y)
        self.metrics = pair_metrics(self.logits, self.data.test_y)

    def hardest(self, k: int = 16) -> np.ndarray:
        return hardest_errors(self.logits, self.data.test_y, k)

    def summary(self) -> dict:
        """Plain numbers for analysis.json and the report."""
        return {"run": self.run_dir.name, "model": self.cfg.model, "best_epoch": self.best["epoch"],
                "test_acc": self.metrics["acc"], "test_auc": self.metrics["auc"], "test_loss": self.metrics["loss"],
                "average_precision": self.curves["ap"], "best_threshold": self.curves["best_threshold"],
                "best_threshold_acc": self.curves["best_threshold_acc"], "confusion": self.cm.tolist(),
                "n_test_pairs": int(len(self.logits)), "n_errors": int(self.cm[0, 1] + self.cm[1, 0]),
                "hardest_errors": self.hardest().tolist()}

    def figures(self) -> dict:
        """Drawn once; the notebook shows them and save/publish write the same objects."""
        if self._figures is None:
            self._figures = self._draw()
        return self._figures

    def _draw(self) -> dict:
        images = self.data.eval_images_raw.numpy()
        hard = self.hardest()
        prob = torch.sigmoid(self.logits)
        return {
            "confusion_matrix": plots.plot_confusion(self.cm, "混淆矩阵（最佳检查点，测试对）"),
            "roc_pr": plots.plot_roc_pr(self.curves),
            "threshold": plots.plot_threshold(self.curves),
            "score_hist": plots.plot_score_hist(self.curves),
            "hardest_errors": plots.plot_pairs(images, self.data.test_a[hard], self.data.test_b[hard],
                                               self.data.test_y[hard], self.data.eval_labels, prob[hard],
                                               n=len(hard), title="最难的误判样本对（真实标签、数字与得分）"),
            "curves": plots.plot_curves(self.history),
            "curves_vs_seed": plots.plot_curves_vs_seed(self.history, SEED_HISTORY),
            "sample_pairs": plots.plot_pairs(images, self.data.test_a, self.data.test_b, self.data.test_y,
                                             self.data.eval_labels, prob, n=10,
                                             title="测试样本对（标签与最佳模型得分）"),
        }

    def save(self, folder: str | Path, figures_root: str | Path) -> None:
        """analysis.json into `folder`, the figures into <figures_root>/<folder name>/."""
        folder = Path(folder)
        atomic_write_text(folder / "analysis.json", json.dumps(self.summary(), indent=1))
        for name, fig in self.figures().items():
            plots.save_figure(fig, Path(figures_root) / folder.name / f"{name}.png")


def analyze(run_dir: str | Path, device: str = "cpu") -> Analysis:
    run_dir = resolve(run_dir)
    model, cfg, ckpt = load_run(run_dir, "best", device)
    dev = torch.device(device)
    cfg = cfg.replace(device=dev.type)
    data = PairData(cfg, dev)
    _, logits = evaluate(model, data, cfg, dev, autocast_dtype(cfg, dev))
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return Analysis(run_dir, cfg, read_history(run_dir), meta, logits, data)


def publish(analysis: Analysis, name: str, reports_dir: Path = REPORTS_DIR) -> Path:
    """Copy the run's files to reports/runs/<name>/ and its figures to reports/figures/<name>/."""
    dest = reports_dir / "runs" / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in RUN_FILES:
        shutil.copy2(analysis.run_dir / f, dest / f)
    analysis.save(dest, reports_dir / "figures")
    return dest
