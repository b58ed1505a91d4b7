"""The Chinese report is written from run files: its numbers must match history.json."""
from __future__ import annotations

import json
import re

import pytest

from mnist_pairs import notebook as nb
from mnist_pairs import train as T
from mnist_pairs.config import Config
from mnist_pairs.paths import REPORTS_DIR


def _epoch_rows(report: str) -> dict[int, list[str]]:
    """The per-epoch table of section 6: {epoch: [train loss, train acc, test loss, test acc, auc]}."""
    section = report.split("## 6.", 1)[1].split("## 7.", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].isdigit():
            rows[int(cells[0])] = cells[1:6]
    return rows


def _check_against_history(report: str, history: list[dict]) -> None:
    rows = _epoch_rows(report)
    assert sorted(rows) == [h["epoch"] for h in history]
    for h in history:
        expected = [f"{h[k]:.4f}" for k in ("train_loss", "train_acc", "test_loss", "test_acc", "test_auc")]
        assert rows[h["epoch"]] == expected, h["epoch"]
    best = max(history, key=lambda r: r["test_acc"])
    assert f"最佳检查点（Epoch {best['epoch']}）" in report
    assert f"测试准确率 {best['test_acc']:.4f}" in report


def test_report_from_a_fresh_run_matches_its_history(tmp_path):
    cfg = Config(epochs=2, train_pairs=512, test_pairs=200, batch_size=64, out_dir=str(tmp_path), run_name="r")
    run = T.fit(cfg, log=lambda m: None)
    report = nb.write_outputs(nb.analyze(run))  # quick mode: everything inside the run folder
    assert report == run / "report" / "report_zh.md"
    text = report.read_text(encoding="utf-8")
    _check_against_history(text, T.read_history(run))
    for section in ("实验背景与目标", "数据集构成", "网络架构", "训练配置与环境", "训练过程结果", "最终结果与分析",
                    "与原实验对比", "优化历程", "复现方法"):
        assert section in text, section
    assert "192,449" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (report.parent / link).is_file(), link
    assert json.loads((run / "analysis.json").read_text())["n_test_pairs"] == 200


@pytest.mark.skipif(not (REPORTS_DIR / "report_zh.md").is_file(), reason="no committed report yet")
def test_committed_report_matches_the_committed_runs():
    text = (REPORTS_DIR / "report_zh.md").read_text(encoding="utf-8")
    _check_against_history(text, json.loads((REPORTS_DIR / "runs" / "seed_siamese" / "history.json").read_text()))
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (REPORTS_DIR / link).is_file(), link
