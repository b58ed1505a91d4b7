"""Time to 99.3 % (mnist_pairs/study/speed.py): the registered rule that picks the fast recipe."""
import json
import subprocess

import pytest

from mnist_pairs.paths import PROJECT_ROOT
from mnist_pairs.study import speed


def _group(name: str, val: float, train_s: float, seeds=(0, 1, 2), started="2026-11-30T13:00:00") -> dict:
    runs = [{"seed": s, "val_acc": val, "heldout_acc": val, "train_seconds": train_s, "started": started,
             "precision": "fp32", "cpu": "AMD EPYC"} for s in seeds]
    return {"group": name, "name": name.split("__")[0], "n_runs": len(runs), "runs": runs,
            "config": {"epochs": 20, "lr": 1e-3, "ema": 0.0},
            "mean": {"val_acc": val, "heldout_acc": val, "train_seconds": train_s},
            "ci95": {"val_acc": [val, val], "heldout_acc": [val, val]}}


def _groups(vals_and_seconds) -> dict:
    return {name: _group(name, v, s) for name, (v, s) in zip(speed.CANDIDATES, vals_and_seconds)}


def test_the_fastest_admissible_candidate_is_chosen():
    got = speed.choose(_groups([(0.9931, 300), (0.9940, 200), (0.9950, 400), (0.9929, 100)]))
    assert (got["chosen"], got["why"]) == ("fast_b__validation", "fastest_admissible")


def test_a_tie_in_seconds_goes_to_the_higher_validation_accuracy():
    # fast_c is 4 % slower than fast_b: a tie, and its validation accuracy is higher
    got = speed.choose(_groups([(0.9931, 300), (0.9935, 200), (0.9950, 208), (0.9990, 500)]))
    assert got["chosen"] == "fast_c__validation"
    # 6 % slower is no tie
    assert speed.choose(_groups([(0.9931, 300), (0.9935, 200), (0.9950, 212), (0.9990, 500)]))["chosen"] == "fast_b__validation"


def test_with_none_admissible_the_best_validation_accuracy_goes_on():
    got = speed.choose(_groups([(0.985, 100), (0.990, 300), (0.9929, 400), (0.991, 200)]))
    assert (got["chosen"], got["why"]) == ("fast_c__validation", "none_admissible")


def test_nothing_is_chosen_before_every_candidate_has_its_seeds():
    groups = _groups([(0.9931, 300), (0.9940, 200), (0.9950, 400), (0.9929, 100)])
    groups["fast_d__validation"] = _group("fast_d__validation", 0.999, 50, seeds=(0, 1))
    assert speed.choose(groups)["chosen"] is None
    del groups["fast_d__validation"]
    assert speed.choose(groups)["chosen"] is None


@pytest.mark.parametrize("commit,time", [(speed.PLAN_COMMIT, speed.PLAN_TIME), (speed.CHOICE_COMMIT, speed.CHOICE_TIME)])
def test_the_commit_times_the_report_states_are_the_ones_git_knows(commit, time):
    r = subprocess.run(["git", "-C", str(PROJECT_ROOT), "log", "-1", "--format=%cI", commit], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no git history here (not a clone)")
    assert r.stdout.strip() == time
    assert (PROJECT_ROOT / speed.PLAN_FILE).is_file()


def test_runs_started_before_the_plan_are_flagged(tmp_path):
    from mnist_pairs.paths import Reports

    groups = _groups([(0.99, 200)] * 4)
    assert speed.report_facts(groups, Reports(tmp_path))["plan_first"]
    groups["fast_a__validation"]["runs"][0]["started"] = "2026-11-30T11:00:00"
    assert not speed.report_facts(groups, Reports(tmp_path))["plan_first"]


def test_steps_and_the_weight_an_ema_still_gives_the_first_step():
    g = _group("fast_c__validation", 0.5, 200)
    g["config"] |= {"pairing": "shared", "protocol": "validation", "val_images": 1000, "batch_size": 256, "ema": 0.999}
    row = speed.candidate_row(g, subset_images=6000)
    assert row["steps"] == 20 * 20                        # 5,000 training images in batches of 256: 20 steps an epoch
    assert row["ema_first_weight"] == pytest.approx(0.999 ** 400) and row["ema_stuck"]      # 67 % still the first step's
    g["config"]["ema"] = 0.99
    assert not speed.candidate_row(g, subset_images=6000)["ema_stuck"]                       # 0.99 ** 400 ≈ 2 %
    g["config"]["ema"] = 0.0
    assert speed.candidate_row(g, subset_images=6000)["ema_first_weight"] is None


def test_the_report_states_the_target_the_benchmark_judges(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import bench_time_to_accuracy as bench

    assert speed.TARGET == {"heldout_acc": bench.TARGET_ACC, "every_seed_heldout_acc": bench.SEED_FLOOR,
                            "wall_s": bench.TARGET_S}


def test_the_confirmation_verdict_per_path_from_the_benchmark_json(tmp_path):
    from mnist_pairs.paths import Reports

    rp = Reports(tmp_path)
    rp.benchmarks.mkdir(parents=True)
    bench = {"precision": "fp32", "isa_caps": {}, "met": False, "wall_s": {"mean": 310.0, "ci95": [300.0, 320.0]},
             "target": {"every_seed_heldout_acc": 0.992}, "seeds": [10, 11],
             "runs": [{"seed": 10, "heldout_acc": 0.9915}, {"seed": 11, "heldout_acc": 0.995}]}
    (rp.benchmarks / speed.BENCH_FILES["fp32"]).write_text(json.dumps(bench))
    groups = _groups([(0.99, 200)] * 4)
    fp32, bf16 = speed.CONFIRM["fp32"], speed.CONFIRM["bf16"]
    groups[fp32] = _group(fp32, 0.993, 215, seeds=(10, 11), started="2026-11-30T15:00:00")
    groups[bf16] = _group(bf16, 0.994, 110, seeds=(10, 11), started="2026-11-30T16:00:00")
    for r in groups[fp32]["runs"]:
        r["cpu_native_bf16"] = False
    facts = speed.report_facts(groups, rp)
    b = facts["benches"]["fp32"]
    assert b["below_floor"] == [10] and b["no_native_bf16"] and b["wall_range"] == [300.0, 320.0]
    assert b["confirm"]["group"] == fp32           # each path is shown with its own confirmation runs
    assert facts["verdict"] == "missed" and facts["missing_paths"] == ["bf16"] and facts["choice_first"]
    assert facts["confirm_seeds_fresh"]            # the same seeds on both paths are not a reuse
    groups[bf16]["runs"][0]["started"] = "2026-11-30T14:00:00"     # before the choice's commit
    assert not speed.report_facts(groups, rp)["choice_first"]
    del groups[bf16]
    bench["met"] = True
    (rp.benchmarks / speed.BENCH_FILES["fp32"]).write_text(json.dumps(bench))
    assert speed.report_facts(groups, rp)["verdict"] == "open"      # the bf16 path is not measured: not met
    groups[fp32]["runs"][0]["cpu_native_bf16"] = True
    assert not speed.report_facts(groups, rp)["benches"]["fp32"]["no_native_bf16"]


def test_the_report_says_the_paths_share_seeds_only_when_they_do(tmp_path):
    from mnist_pairs.paths import Reports

    rp = Reports(tmp_path)
    rp.benchmarks.mkdir(parents=True)
    groups = _groups([(0.99, 200)] * 4)

    def write(path, seeds):
        bench = {"precision": path, "isa_caps": {}, "met": False, "wall_s": {"mean": 100.0, "ci95": [90.0, 110.0]},
                 "target": {"every_seed_heldout_acc": 0.992}, "seeds": seeds,
                 "runs": [{"seed": s, "heldout_acc": 0.99} for s in seeds]}
        (rp.benchmarks / speed.BENCH_FILES[path]).write_text(json.dumps(bench))

    write("fp32", [10, 11, 12])
    facts = speed.report_facts(groups, rp)
    assert (facts["bench_seeds"], facts["same_seeds"]) == ([10, 11, 12], False)     # one path: nothing shared
    write("bf16", [10, 11, 12])
    assert speed.report_facts(groups, rp)["same_seeds"]
    write("bf16", [10, 11, 13])
    facts = speed.report_facts(groups, rp)
    assert (facts["bench_seeds"], facts["same_seeds"]) == ([10, 11, 12, 13], False)


def test_the_summary_keeps_the_rule_commit_the_choice_and_each_paths_confirmation_group():
    groups = _groups([(0.985, 100), (0.990, 300), (0.9929, 400), (0.991, 200)])
    rec = speed.summary_record(groups)
    assert rec["rule_commit"] == speed.PLAN_COMMIT and rec["rule_precedes_runs"]
    assert (rec["chosen"], rec["recipe_params"]) == ("fast_c__validation", "params/fast_c.yaml")
    assert rec["confirmation_groups"] == {"fp32": None, "bf16": None}
    groups[speed.CONFIRM["bf16"]] = _group(speed.CONFIRM["bf16"], 0.993, 215, seeds=(10, 11, 12))
    assert speed.summary_record(groups)["confirmation_groups"] == {"fp32": None, "bf16": speed.CONFIRM["bf16"]}
    assert speed.summary_record({}) is None
