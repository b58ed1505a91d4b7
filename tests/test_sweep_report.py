"""Sweeps on Optuna (two workers, one storage), the summary, and the report rendered from them."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from mnist_pairs.study import report as R
from mnist_pairs.analysis import analyze, publish
from mnist_pairs.paths import Reports
from mnist_pairs.study.summary import summarize
from mnist_pairs.study.sweep import SweepSpec, _study, parse_seeds, sweep

TINY = (("epochs", 2), ("train_pairs", 512), ("test_pairs", 200), ("val_pairs", 200), ("val_images", 200),
        ("heldout_pairs", 400), ("batch_size", 64))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    val = SweepSpec("params/smoke.yaml", "validation", TINY, None, str(root))
    runs = sweep(val, [0, 1, 2], workers=2, log=lambda m: None)
    test = SweepSpec("params/smoke.yaml", "test", TINY, None, str(root))
    sweep(test, [0, 1], workers=1, log=lambda m: None)
    return root, val, runs


@pytest.fixture(scope="module")
def published(swept, tmp_path_factory):
    """The sweeps summarized into a reports folder with the first run published as the seed's
    model (its figures take most of the time: made once, copied by the test that alters them)."""
    root, _, runs = swept
    reports = tmp_path_factory.mktemp("published") / "reports"
    summary = summarize(str(root), Reports(reports))
    publish(analyze(runs[0], log=lambda m: None), "seed_siamese", reports)
    return reports, summary


def test_seed_ranges():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("1,5,9") == [1, 5, 9]
    with pytest.raises(Exception, match="--seeds"):
        parse_seeds("a-b")


def test_two_workers_finish_every_trial_once(swept):
    from optuna.trial import TrialState

    root, spec, runs = swept
    trials = _study(spec).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["seed"] for t in done) == [0, 1, 2]         # each seed once, none twice
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.user_attrs["worker"] for t in done}) == 2               # both workers took trials
    assert sorted(r.cfg.seed for r in runs) == [0, 1, 2]
    assert all("resumes" not in r.env for r in runs)                      # nobody trained a seed twice
    # a re-run enqueues nothing and trains nothing
    again = sweep(spec, [0, 1, 2], workers=2, log=lambda m: None)
    assert [r.dir for r in again] == [r.dir for r in runs]
    assert len(_study(spec).get_trials()) == len(trials)


def test_a_killed_trial_is_resumed_by_the_next_sweep(tmp_path):
    import os
    import socket
    import subprocess

    from optuna.trial import TrialState

    from mnist_pairs.train import fit

    spec = SweepSpec("params/smoke.yaml", "validation", TINY, None, str(tmp_path))
    # a worker took seed 5, finished one epoch of two, and was killed
    partial = fit(spec.config(5).replace(epochs=1), log=lambda m: None)
    for f in ("results.json", "scores.npz"):
        (partial.dir / f).unlink()
    study = _study(spec)
    study.enqueue_trial({"seed": 5})
    trial = study.ask()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    trial.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}")
    assert study.get_trials()[0].state == TrialState.RUNNING

    runs = sweep(spec, [5], workers=1, log=lambda m: None)
    assert [r.cfg.seed for r in runs] == [5] and runs[0].finished
    assert [h["epoch"] for h in runs[0].records] == [1, 2]                 # resumed, not restarted
    assert runs[0].env["resumes"][0]["from_epoch"] == 1
    states = sorted(t.state.name for t in _study(spec).get_trials())
    assert states == ["COMPLETE", "FAIL"] and os.getpid() != gone.pid


def test_summary_and_report(published):
    reports, summary = published
    groups = summary["groups"]
    assert set(groups) == {"smoke__validation", "smoke__test"}
    g = groups["smoke__validation"]
    assert g["protocol"] == "validation" and g["model"] == "siamese" and g["params"] == 192_449
    assert [r["seed"] for r in g["runs"]] == [0, 1, 2] and g["n_runs"] == 3
    for field in ("seed", "selected_epoch", "test_acc", "final_test_acc", "best_test_acc", "heldout_acc",
                  "heldout_auc", "heldout_ci95", "heldout_pairs", "train_seconds", "autocast", "cpu", "device"):
        assert field in g["runs"][0], field
    accs = [r["heldout_acc"] for r in g["runs"]]
    assert g["mean"]["heldout_acc"] == pytest.approx(sum(accs) / 3)
    assert g["ci95"]["heldout_acc"][0] < g["mean"]["heldout_acc"] < g["ci95"]["heldout_acc"][1]
    assert (reports / "sweeps" / "smoke__validation" / "seed0" / "results.json").is_file()

    text = R.write_report(reports).read_text(encoding="utf-8")
    assert "验证协议" in text and "测试协议" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (reports / link).is_file(), link
    # the one-run table is the published run's history
    h = json.loads((reports / "runs" / "seed_siamese" / "history.json").read_text())
    assert f"| {h[-1]['epoch']} | {h[-1]['train_loss']:.4f} | {h[-1]['train_acc']:.4f} |" in text
    assert "如何复现" in text and "95% 预测区间" in text


def test_report_on_a_cpu_without_bf16_says_fp32_and_claims_nothing_else(published, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(published[0], reports)
    env_path = reports / "runs" / "seed_siamese" / "env.json"
    env = json.loads(env_path.read_text())
    env.update(cpu="AMD EPYC 7B12 (AVX2 fixture)", cpu_isa="avx2", cpu_native_bf16=False, precision="fp32",
               autocast="off", grad_scaler=False)
    env_path.write_text(json.dumps(env))
    cfg_path = reports / "runs" / "seed_siamese" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["precision"] = "fp32"
    cfg_path.write_text(yaml.safe_dump(cfg))
    facts = R.collect(reports)
    assert facts["S"]["env"]["precision"] == "fp32"
    assert facts["repro"]["same_environment"] is False
    text = R.render(facts)
    assert "该 CPU 不原生支持 bf16" in text and "| 精度 | fp32（autocast：off" in text
    assert "该 CPU 原生支持 bf16" not in text
    repro = text.split("## 8. 如何复现")[1].split("## 附录")[0]
    assert "与多种子运行不同" in repro and "都与多种子运行相同" not in repro


def test_a_stacked_lever_is_paired_with_the_lever_it_extends():
    from mnist_pairs.study.ablation import BASELINE, EXTENDS, ablation_rows, adopted

    stacked, under = next(iter(EXTENDS.items()))

    def group(name, accs):
        return {"group": name, "runs": [{"seed": s, "val_acc": a, "test_acc": a, "heldout_acc": a}
                                        for s, a in enumerate(accs)]}

    groups = {BASELINE: group(BASELINE, [0.980, 0.981, 0.982]),
              under: group(under, [0.985, 0.986, 0.987]),
              stacked: group(stacked, [0.986, 0.9875, 0.988])}
    rows = {r["group"]["group"]: r for r in ablation_rows(groups)}
    assert rows[under]["versus"] is None and adopted(rows[under])
    d = rows[stacked]["delta"]["val_acc"]
    # against the lever underneath (+0.0012 ± …), not the seed configuration (+0.006)
    assert d["mean"] == pytest.approx(0.0011666, abs=1e-6) and rows[stacked]["versus"]
    # Δ +0.10, +0.15, +0.10 points: the t-interval (3 seeds, t = 4.30) is [+0.045, +0.19], above 0
    assert d["ci95"][0] == pytest.approx(0.000449, abs=2e-6) and adopted(rows[stacked]) is True
    groups[stacked] = group(stacked, [0.990, 0.984, 0.988])      # Δ +0.5, -0.2, +0.1: its interval holds 0
    d = {r["group"]["group"]: r for r in ablation_rows(groups)}[stacked]
    assert d["delta"]["val_acc"]["ci95"][0] < 0 < d["delta"]["val_acc"]["mean"] and adopted(d) is False
    del groups[under]  # without the lever underneath, the stacked one has nothing to be paired with
    assert stacked not in {r["group"]["group"] for r in ablation_rows(groups)}


def _group(values: dict[int, float], started: str = "2026-01-01T00:00:0") -> dict:
    """A summary group of runs with the given held-out accuracy per seed (fixture for repro_check)."""
    runs = [{"seed": s, "val_acc": 0.99, "heldout_acc": v, "test_acc": 0.98, "started": f"{started}{s}",
             "cpu": "AMD EPYC", "precision": "fp32", "torch": "2.14.1", "device": "cpu", "gpu": None,
             "torch_threads": 2} for s, v in values.items()]
    vs = list(values.values())
    mean = sum(vs) / len(vs)
    sd = (sum((v - mean) ** 2 for v in vs) / (len(vs) - 1)) ** 0.5
    return {"group": "g__validation", "n_runs": len(runs), "runs": runs,
            "mean": {"heldout_acc": mean, "test_acc": 0.98}, "sd": {"heldout_acc": sd, "test_acc": 0.001}}


def _fresh(seed: int, heldout: float, started: str) -> dict:
    return {"cfg": {"seed": seed}, "env": {"cpu": "AMD EPYC", "precision": "fp32", "torch": "2.14.1", "started": started},
            "results": {"best_val": {"acc": 0.99}, "best_heldout": {"acc": heldout}, "best_test": {"acc": 0.98}}}


def test_a_fresh_run_of_a_committed_seed_is_checked_against_that_run_and_the_distribution():
    group = _group({5: 0.993, 6: 0.994, 7: 0.995})
    same = R.repro_check(_fresh(6, 0.994, "2026-02-02T00:00:00"), group)
    assert same["keys"] == ["heldout_acc", "test_acc"] and same["heldout_acc"]["inside"]
    assert {k: same["twin"][k] for k in ("seed", "identical", "before_fix")} == {"seed": 6, "identical": True, "before_fix": False}
    assert same["twin"]["pairs"][0] == {"key": "heldout_acc", "committed": 0.994, "fresh": 0.994}   # what the report prints
    # a shared-encoding group whose run of that seed finished before the determinism fix: not rebuildable
    shared = group | {"config": {"pairing": "shared"}, "runs": [r | {"finished": "2026-11-29T00:00:00"} for r in group["runs"]]}
    assert R.repro_check(_fresh(6, 0.994, "2026-02-02T00:00:00"), shared)["twin"]["before_fix"] is True
    later = shared | {"runs": [r | {"finished": "2026-12-01T00:00:00"} for r in group["runs"]]}
    assert R.repro_check(_fresh(6, 0.994, "2026-02-02T00:00:00"), later)["twin"]["before_fix"] is False
    moved = R.repro_check(_fresh(6, 0.9941, "2026-02-02T00:00:00"), group)
    assert moved["twin"]["identical"] is False and moved["heldout_acc"]["inside"]
    far = R.repro_check(_fresh(42, 0.95, "2026-02-02T00:00:00"), group)
    assert "twin" not in far and not far["heldout_acc"]["inside"] and far["heldout_acc"]["off_by"] < 0


def test_identical_needs_the_same_weights_where_both_runs_recorded_them():
    """Equal accuracies are not enough when both runs recorded their weights' sha256 (digests.json,
    copied beside the summary's run files): the check then says identical only for the same bytes."""
    group = _group({5: 0.993, 6: 0.994, 7: 0.995})
    group["runs"][1]["weights_sha256"] = "a" * 64
    fresh = _fresh(6, 0.994, "2026-02-02T00:00:00")
    assert R.repro_check(fresh | {"weights_sha256": "a" * 64}, group)["twin"] | {"pairs": None} == \
        {"seed": 6, "epoch": None, "fresh_epoch": None, "pairs": None, "weights": "same", "identical": True, "before_fix": False}
    other = R.repro_check(fresh | {"weights_sha256": "b" * 64}, group)["twin"]
    assert other["weights"] == "different" and other["identical"] is False      # same numbers, other weights
    assert R.repro_check(fresh, group)["twin"]["weights"] is None               # not recorded: the numbers decide
    assert R.repro_check(fresh, group)["twin"]["identical"] is True


def test_a_published_confirmation_run_is_not_compared_with_itself():
    group = _group({5: 0.993, 6: 0.994, 7: 0.995})
    assert R.is_committed_run(_fresh(6, 0.994, "2026-01-01T00:00:06"), group)       # the committed run itself
    assert not R.is_committed_run(_fresh(6, 0.994, "2026-02-02T00:00:00"), group)   # a fresh run of its seed
    assert not R.is_committed_run(_fresh(6, 0.994, "2026-01-01T00:00:06"), None)


def test_the_previously_published_model_is_the_seed_the_old_rule_picked():
    """The report keeps the model published before the `best` recipe's as a record: the improved
    confirmation run with the highest validation accuracy, its held-out rank among the five."""
    from mnist_pairs.study.report import previous_improved

    group = _group({5: 0.993, 6: 0.990, 7: 0.995})
    for r, val in zip(group["runs"], (0.990, 0.995, 0.991)):
        r |= {"val_acc": val, "selected_epoch": 40 + r["seed"], "finished": "2026-11-29T00:00:00"}   # seed 6 picked
    old = previous_improved(group)
    assert {k: old[k] for k in ("seed", "epoch", "heldout_acc", "rank", "n", "before_fix")} == \
        {"seed": 6, "epoch": 46, "heldout_acc": 0.990, "rank": 3, "n": 3, "before_fix": True}
    assert previous_improved(None) is None
