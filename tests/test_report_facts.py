"""The report's computed facts (issue 35): each decided in Python, each checked here on inputs
whose answer is known, and on the committed report where the files give it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mnist_pairs import analysis
from mnist_pairs.paths import REPORTS_DIR
from mnist_pairs.study import findings as F
from mnist_pairs.study import report as R

REPORT = REPORTS_DIR / "report_zh.md"
published = pytest.mark.skipif(not (REPORTS_DIR / "runs" / "seed_siamese" / "results.json").is_file(),
                               reason="no published run (make study)")


def group(seeds, **run):
    return {"runs": [{"seed": s, **run} for s in seeds]}


def test_finished_groups_counts_only_groups_whose_every_run_had_finished():
    groups = {"a": group([0, 1, 2]), "b": group([0, 1, 2, 3, 4]), "c": group([0, 1, 2, 3, 4])}
    out = F.finished_groups({"a": [0, 1, 2], "b": [0, 1, 2, 3, 4], "c": [0]}, groups)
    assert out["complete"] == ["a", "b"]
    assert out["partial"] == {"c": [0]}


def test_gap_words_a_paired_delta_without_a_sign():
    assert F.gap({"mean": 0.011, "ci95": [0.0082, 0.0138]}) == {"higher": True, "text": "1.10 ± 0.28"}
    assert F.gap({"mean": -0.005, "ci95": [-0.008, -0.002]}) == {"higher": False, "text": "0.50 ± 0.30"}
    assert F.gap(None) is None


def test_setup_lists_the_cpus_and_precisions_of_a_groups_runs():
    g = {"runs": [{"cpu": "B", "precision": "fp32"}, {"cpu": "A", "precision": "fp32"}]}
    assert F.setup(g) == {"cpus": ["A", "B"], "precisions": ["fp32"]}


class Stub:
    """compare_embeddings: the negative squared distance (a larger logit, a closer image)."""

    def compare_embeddings(self, a, b):
        return -((a - b) ** 2).sum(1)


def test_retrieval_names_every_other_digit_among_the_best_matches():
    labels = np.repeat(np.arange(10), 8)
    emb = np.stack([labels * 10.0 + np.arange(len(labels)) % 8 * 0.1, np.zeros(len(labels))], 1).astype(np.float32)
    first3 = np.flatnonzero(labels == 3)[0]
    emb[np.flatnonzero(labels == 5)[2]] = emb[first3] + [0.01, 0]       # a 5 right beside the query 3
    r = analysis.retrieval(Stub(), emb, labels, k=5)
    assert r["query_digits"] == list(range(10)) and np.asarray(r["top"]).shape == (10, 6)
    assert r["match_digits"][3][0] == 5                                  # the 5 is query 3's best match
    misses = F.retrieval_misses(analysis.retrieval_json(r))
    assert misses == [{"query": 3, "rank": 1, "digit": 5}]
    assert all(row[-1] != q for q, row in zip(r["query_digits"], r["match_digits"]))   # the last column: another digit


def test_the_fastest_setting_is_the_fastest_measured_one():
    bench = {"cpu": "X", "precision": "fp32", "seed_style_s_per_epoch": 43.27, "project_s_per_epoch": 14.46,
             "project_fp32_s_per_epoch": 13.59}
    [row] = R.cpu_targets([bench])
    assert row["s"] == 13.59 and row["setting"] == "fp32" and row["x"] == pytest.approx(43.27 / 13.59)
    fused = bench | {"fused_s_per_epoch": 7.05}
    assert R.cpu_targets([fused])[0]["s"] == 7.05
    bf16 = bench | {"precision": "bf16", "project_s_per_epoch": 5.98}
    assert R.cpu_targets([bf16])[0]["setting"] == "默认精度（bf16）"


def test_lock_facts_say_all_same_only_when_every_published_run_used_this_lock():
    from mnist_pairs.hardware import lock_sha256

    now = lock_sha256()
    run = lambda sha: {"env": {"requirements_lock_sha256": sha}}
    assert R.lock_facts([("a", run(now)), ("b", run(now)), ("c", None)])["all_same"]
    assert not R.lock_facts([("a", run(now)), ("b", run("0" * 64))])["all_same"]
    assert not R.lock_facts([("a", run(now)), ("b", run(None))])["all_same"]


def test_captions_never_chain_two_colons():
    from mnist_pairs.study.labels_zh import FIGURES

    for _, _, see in FIGURES:
        assert "：" not in R.caption(see)


@published
def test_the_committed_report_words_what_the_files_show():
    text = REPORT.read_text(encoding="utf-8")
    facts = R.collect(REPORTS_DIR)
    # each retrieval caption names every other digit among the best matches, and claims nothing else
    for role in ("siamese", "improved"):
        rf = facts["retrieval"][role]
        assert rf is not None, role
        for m in rf["misses"]:
            assert f"查询 {m['query']} 的第 {m['rank']} 近邻是 {m['digit']}" in text
    assert "前五列都是同一数字" not in text
    # the rows the picture conversion undoes are marked, and only those
    rb = facts["robustness"]
    for name, label in rb["perturbations"].items():
        assert (f"| {label} † |" in text) == (name in F.NEUTRALISED), name
    # the rule change: groups complete before it, the others named with their seeds
    ev = next(e for e in facts["timeline"] if e["changed"])
    assert f"改动时已有 {len(ev['finished']['complete'])} 组候选的运行全部结束" in text
    # the precision of the report's run: from env.json only
    assert "或 oneDNN 被限制" not in text and "因此用 fp32（精度" not in text
    # one wording per thing
    for old in ("确认对上的 Δ", "自助法", "每个运行只在结束时计分一次", "不是 MNIST 自己的图片", "高 +"):
        assert old not in text, old


@published
def test_committed_retrieval_json_is_what_the_published_model_gives(mnist_root):
    """figures/<run>/retrieval.json, written with the figure, against the published model run again."""
    from mnist_pairs.runs import Run

    for name in ("seed_siamese", "improved"):
        committed = json.loads((REPORTS_DIR / "figures" / name / "retrieval.json").read_text())
        a = analysis.analyze(Run.open(REPORTS_DIR / "runs" / name), log=lambda m: None)
        with torch.no_grad():
            again = analysis.retrieval_json(a.retrieval())
        assert again["match_digits"] == committed["match_digits"] and again["top"] == committed["top"], name


def test_published_calibration_words_the_side_of_one_each_temperature_lies_on(tmp_path):
    from mnist_pairs.paths import Reports
    from mnist_pairs.study.calibration import PUBLISHED_JSON

    runs = {"a": {"temperature": 1.2}, "b": {"temperature": 0.9}, "c": {"temperature": 1.0}}
    (tmp_path / PUBLISHED_JSON).write_text(json.dumps({"bins": 15, "command": "x", "runs": runs}))
    out = R.published_calibration(Reports(tmp_path), {"siamese": "a", "concat": "b", "improved": "c"}, lambda f, n: None)
    assert [(r["name"], r["side"]) for r in out["runs"]] == [("a", "over"), ("b", "under"), ("c", None)]
    assert R.published_calibration(Reports(tmp_path / "none"), {}, lambda f, n: None) is None
