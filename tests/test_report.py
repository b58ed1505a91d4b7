"""reports/report_zh.md is exactly what the template says about the files beside it.

In a clean checkout (CI) that is the committed report against the committed files. After a
user's `make study` it is the study's report against the study's runs: the study publishes
its runs and its report together, at the end (study.py), so a finished study passes and a
killed one leaves the previous, consistent state. A hand edit of reports/report_zh.md, a
template change without regenerating it, or a run, summary or benchmark file replaced without
regenerating it all fail here. (How the report words a fresh run, an fp32 CPU and a
multi-seed summary is tested in test_sweep_report.py.)
"""
from __future__ import annotations

import json
import re

import pytest

from mnist_pairs.study import report as R
from mnist_pairs.paths import REPORTS_DIR

REPORT = REPORTS_DIR / "report_zh.md"
pytestmark = pytest.mark.skipif(not (REPORTS_DIR / "runs" / "seed_siamese" / "results.json").is_file(),
                                reason="no published run (make study)")


@pytest.fixture(scope="module")
def facts():
    return R.collect(REPORTS_DIR)


def test_report_is_regenerated_from_the_files_beside_it(facts):
    assert REPORT.read_text(encoding="utf-8") == R.render(facts), \
        "reports/report_zh.md is stale: regenerate it with `python -m mnist_pairs study --report-only`"


def test_headline_and_run_facts_come_from_their_files(facts):
    text = REPORT.read_text(encoding="utf-8")
    summary = json.loads((REPORTS_DIR / "summary.json").read_text())
    for g in summary["groups"].values():
        assert R.pm(g, "heldout_acc") in text, g["group"]
    env = json.loads((REPORTS_DIR / "runs" / "seed_siamese" / "env.json").read_text())
    assert f"| 精度 | {env['precision']}（autocast：{env['autocast']}" in text
    history = json.loads((REPORTS_DIR / "runs" / "seed_siamese" / "history.json").read_text())
    last = history[-1]
    assert f"| {last['epoch']} | {last['train_loss']:.4f} | {last['train_acc']:.4f} |" in text
    assert "## 6. 训练过程结果（单次运行" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (REPORTS_DIR / link).is_file(), link
