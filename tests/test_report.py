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
    assert "### F. 单次运行（训练种子" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (REPORTS_DIR / link).is_file(), link


def test_readme_headline_and_tables_come_from_the_committed_files(tmp_path):
    """`summarize` writes reports/tables.md and the README's headline lines; the committed ones are
    what the committed summary and benchmarks give, and the verdict is the registered rule's."""
    import shutil

    from mnist_pairs.paths import PROJECT_ROOT
    from mnist_pairs.study.confirmation import PLAN, outcome
    from mnist_pairs.study.formats import pm

    readme, reports = tmp_path / "README.md", tmp_path / "reports"
    readme.write_text((PROJECT_ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    reports.mkdir()
    shutil.copy(REPORTS_DIR / "summary.json", reports / "summary.json")
    shutil.copytree(REPORTS_DIR / "benchmarks", reports / "benchmarks")
    R.update_readme(readme, reports)
    text, tables = readme.read_text(encoding="utf-8"), (reports / "tables.md").read_text(encoding="utf-8")
    assert text == (PROJECT_ROOT / "README.md").read_text(encoding="utf-8"), "README headline stale: run summarize"
    assert tables == (REPORTS_DIR / "tables.md").read_text(encoding="utf-8"), "reports/tables.md stale: run summarize"

    groups = json.loads((reports / "summary.json").read_text())["groups"]
    head = text.split(R.README_MARKERS[0])[1].split(R.README_MARKERS[1])[0]
    verdict, improved = outcome(groups), groups[PLAN["improved"]]
    assert ("按预先登记的规则已确认" in head) == verdict["confirmed"] != ("按预先登记的规则未确认" in head)
    assert pm(improved, "heldout_acc") in head and pm(improved, "confirm_acc") in head
    assert all(f"`{g['name']}`" in tables for g in groups.values())
    lines = text.splitlines()
    assert len(lines) <= 110 and any("make study" in x for x in lines[:30]) and any("make test" in x for x in lines[:30])


def test_the_main_body_starts_with_an_abstract_and_links_the_three_figures():
    """Findings first: ≤ 220 lines before the appendix, the abstract first, then the headline figure;
    the forest plot and the improved-model figure in the main body, each drawn from the committed files."""
    text = REPORT.read_text(encoding="utf-8")
    body = text.split("\n## 附录")[0]
    assert len(body.splitlines()) <= 220
    sections = re.findall(r"^## (.+)$", body, flags=re.M)
    assert sections[0] == "摘要"
    abstract = body.split("## 摘要")[1].split("\n## ")[0]
    assert "figures/findings/headline.png" in abstract
    for name in ("forest.png", "improved_curves.png"):
        assert f"](figures/findings/{name})" in body, name
        assert (REPORTS_DIR / "figures" / "findings" / name).is_file()


def test_the_template_words_facts_and_decides_nothing():
    """Verdicts, intervals and targets come from collect(); the template holds no interval logic, no
    adoption rule, no commit hash, CPU name or target number of its own."""
    from mnist_pairs.study.report import TEMPLATE

    for path in TEMPLATE.parent.glob("*.j2"):
        t = path.read_text(encoding="utf-8")
        code = " ".join(re.findall(r"{[{%](.*?)[}%]}", t, flags=re.S))
        assert "ci95" not in code and "adopted(" not in code, path.name
        assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", t), path.name     # a commit hash
        assert not re.search(r"Xeon|EPYC|Intel|AMD|\b\d+ 核", t), path.name
        assert not re.search(r"99\.3|0\.993|98\.95|200,000|≥ \d|≤ \d", t), path.name


def test_the_best_confirmation_is_worded_beside_its_targets(facts, tmp_path, monkeypatch):
    """Appendix J's `best` block (empty until its runs exist) rendered from a confirmation the
    files could hold: every target's verdict, the Δ against the seed configuration, the ensemble row."""
    import copy

    from mnist_pairs.paths import Reports
    from mnist_pairs.study import recipes

    if not facts.get("recipes"):
        pytest.skip("no recipe candidates in the committed summary")
    monkeypatch.setitem(recipes.CHOICE, "best", ("abc1234", "2026-12-08T05:00:00+00:00"))
    seeds = recipes.CONFIRM["best"]["seeds"]

    def group(name, heldout, confirm):
        runs = [{"seed": s, "heldout_acc": h, "confirm_acc": c, "cpu": "CPU-X", "precision": "fp32",
                 "started": "2026-12-08T06:00:00", "train_seconds": 700.0 + 10 * i}
                for i, (s, h, c) in enumerate(zip(seeds, heldout, confirm))]
        return {"group": name, "runs": runs, "config": {"confirm_pairs": 40000}}

    groups = {"confirm_best__validation": group("confirm_best__validation", [0.9961, 0.9952, 0.9948, 0.9957, 0.9939],
                                                [0.994, 0.993, 0.995, 0.994, 0.993]),
              "confirm_best_seed__validation": group("confirm_best_seed__validation", [0.988] * 5,
                                                     [0.985, 0.986, 0.984, 0.985, 0.986])}
    rp = Reports(tmp_path)
    (rp.run("ensemble")).mkdir(parents=True)
    (rp.run("ensemble") / "ensemble.json").write_text(json.dumps(
        {"members": [f"seed{s}" for s in seeds], "seeds": list(seeds), "threshold": 0.5,
         "sources": [f"experiments/sweeps/confirm_best__validation/seed{s}" for s in seeds],
         "sets": {"heldout": {"acc": 0.9962, "ci95": [0.9953, 0.9969]}, "confirm": {"acc": 0.9951}}}))
    f = copy.deepcopy(facts)
    f["recipes"]["recipes"]["best"]["confirmation"] = recipes.confirmation_facts(groups, "best", rp)
    text = R.render(f)
    block = text[text.index("**`best` 的确认。**"):]
    row = next(line for line in block.splitlines() if line.startswith("| best（"))
    assert "CPU-X（fp32）" in row and "13、14、15、16、17" in row and "99.51% ±" in row
    assert "未达到：训练种子 17" in row and "+0.86 ±" in row and "区间在 0 之上" in row and row.endswith("| 否 |")
    assert "| 种子配置（`params/confirm_best_seed.yaml`）" in block and "98.80% ±" in block
    assert "提交于 2026-12-08 05:00:00（UTC，abc1234），确认运行（对照的运行也在内）都在此后开始" in block
    assert "5 个 best 确认运行的集成" in block
    assert "留出对 99.62%（按图片重采样的 95% 区间 99.53%–99.69%），确认集 99.51%；计划写定的期望是 ≥ 99.60%" in block
    assert "取阈值 0.5（在验证对上选的阈值 0.500 只用于部署）" in block
    # judged: the summary at the top says it too, with the training times, and no longer calls it open
    summary = text[:text.index("## 1.")]
    bullet = next(line for line in summary.splitlines() if line.startswith("- **best 配方"))
    assert "在新训练种子 13、14、15、16、17 上（CPU-X，fp32；每次训练 700–740 秒，fp32 的预算 1,500 秒）" in bullet
    assert "留出对 99.51% ±" in bullet and "达到 99.50% 的均值目标" in bullet and "训练种子 17 低于 99.40% 的每种子下限" in bullet
    assert "原实验配置的准确率为 +0.86 ±" in bullet and "因此**未达到**" in bullet and "集成（单次结果）留出对 99.62%，达到 99.60% 的期望" in bullet
    assert "best 配方的确认见附录 J" not in summary
    # the seed configuration not run yet: no Δ, nothing judged
    del groups["confirm_best_seed__validation"]
    f["recipes"]["recipes"]["best"]["confirmation"] = recipes.confirmation_facts(groups, "best", rp)
    text = R.render(f)
    row = next(line for line in text.splitlines() if line.startswith("| best（"))
    assert row.endswith("| 对照尚未运行 | 未判定 |"), row
    summary = text[:text.index("## 1.")]
    assert "- **best 配方" not in summary and "best 配方的确认见附录 J" in summary
    # before the ensemble is published, and before the choice (no block at all)
    (rp.run("ensemble") / "ensemble.json").unlink()
    f["recipes"]["recipes"]["best"]["confirmation"] = recipes.confirmation_facts(groups, "best", rp)
    assert "5 个 best 确认运行的集成尚未发布" in R.render(f)
    monkeypatch.setitem(recipes.CHOICE, "best", None)
    f["recipes"]["recipes"]["best"]["confirmation"] = recipes.confirmation_facts(groups, "best", rp)
    assert "**`best` 的确认。**" not in R.render(f)


def test_a_published_run_tied_with_another_is_said_to_share_its_rank():
    from mnist_pairs.study.findings import rank_in

    group = {"runs": [{"seed": s, "heldout_acc": a} for s, a in [(13, 0.994), (14, 0.993), (17, 0.994), (15, 0.995)]]}
    assert rank_in({"cfg": {"seed": 13}}, group) == {"rank": 2, "n": 4, "tied": 1}
    assert rank_in({"cfg": {"seed": 14}}, group) == {"rank": 4, "n": 4, "tied": 0}
    assert rank_in({"cfg": {"seed": 99}}, group) is None
