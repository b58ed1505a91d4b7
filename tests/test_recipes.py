"""Issue 32's `best` and `fast` recipes (mnist_pairs/study/recipes.py): the rule registered in
docs/plans/best_and_fast.md before any of their runs."""
import json
import subprocess
from datetime import datetime, timedelta

import pytest

from mnist_pairs.paths import PROJECT_ROOT, Reports
from mnist_pairs.study import recipes


def _group(name: str, val: float, wall_s: float, epochs: int, ema: float = 0.0, seeds=(0, 1, 2),
           heldout: float = 0.99, started="2026-12-07T05:00:00", precision="fp32") -> dict:
    finished = (datetime.fromisoformat(started) + timedelta(seconds=wall_s)).isoformat()
    runs = [{"seed": s, "final_val_acc": val, "val_acc": 0.5, "heldout_acc": heldout, "started": started,
             "finished": finished, "precision": precision, "cpu": "AMD EPYC"} for s in seeds]
    return {"group": name, "name": name.split("__")[0], "n_runs": len(runs), "runs": runs,
            "config": {"epochs": epochs, "lr": 8e-4, "ema": ema, "checkpoint": "final", "val_images": 1000},
            "mean": {"heldout_acc": heldout}, "ci95": {"heldout_acc": [heldout, heldout]}}


@pytest.fixture
def reports(tmp_path):
    """A reports folder whose bf16 benchmark says 5 s per epoch, process start to end."""
    rp = Reports(tmp_path)
    rp.benchmarks.mkdir(parents=True)
    (rp.benchmarks / "time_to_accuracy_bf16.json").write_text(json.dumps(
        {"wall_s": {"mean": 100.0}, "runs": [{"epochs": 20}]}))
    return rp


def _fast(e=(0.990, 250, 20), f=(0.989, 200, 16), **kw) -> dict:
    return {"fast_e__validation": _group("fast_e__validation", *e, **kw),
            "fast_f__validation": _group("fast_f__validation", *f, **kw)}


def test_the_highest_validation_mean_within_budget_is_chosen(reports):
    got = recipes.choose(_fast(), "fast", reports)
    assert (got["chosen"], got["why"]) == ("fast_e__validation", "highest_val")
    row = got["rows"][0]
    assert row["slowest_s"] == 250 and row["scaled_s"] == {"bf16": 100.0}
    assert row["budget_checks"] == {"fp32": True, "bf16": True}


def test_a_candidate_over_budget_on_either_path_is_left_out(reports):
    # fast_e's slowest run takes 301 s of the 300 s fp32 budget
    assert recipes.choose(_fast(e=(0.990, 301, 20)), "fast", reports)["chosen"] == "fast_f__validation"
    # 25 epochs at the bf16 path's 5 s per epoch: 125 s of its 120 s budget
    assert recipes.choose(_fast(e=(0.990, 250, 25)), "fast", reports)["chosen"] == "fast_f__validation"
    got = recipes.choose(_fast(e=(0.990, 301, 20), f=(0.989, 200, 25)), "fast", reports)
    assert (got["chosen"], got["why"]) == (None, "none_within_budget")


def test_a_tie_goes_to_fewer_epochs_then_no_ema(reports):
    # fast_f within 0.05 pp of fast_e: tied, and it has fewer epochs
    got = recipes.choose(_fast(e=(0.9900, 250, 20), f=(0.98951, 200, 16)), "fast", reports)
    assert (got["chosen"], got["why"]) == ("fast_f__validation", "tie_fewer_epochs")
    assert recipes.choose(_fast(e=(0.9900, 250, 20), f=(0.98949, 200, 16)), "fast", reports)["chosen"] == "fast_e__validation"
    groups = {n: _group(n, 0.995, 1000, 100, ema=e) for n, e in
              zip(recipes.RECIPES["best"]["candidates"], (0.0, 0.999, 0.0))}
    groups["best_c__validation"]["config"]["epochs"] = 110          # more epochs: loses the tie
    groups["best_a__validation"]["runs"][0]["final_val_acc"] = 0.9952   # best_b's EMA: the tie goes to no EMA
    assert recipes.choose(groups, "best", reports)["chosen"] == "best_a__validation"


def test_held_out_pairs_never_choose(reports):
    low, high = _fast(heldout=0.90), _fast(heldout=0.999)
    high["fast_f__validation"]["mean"]["heldout_acc"] = 1.0
    assert recipes.choose(low, "fast", reports)["chosen"] == recipes.choose(high, "fast", reports)["chosen"]


def test_nothing_is_chosen_before_every_candidate_has_its_seeds(reports):
    groups = _fast()
    groups["fast_f__validation"] = _group("fast_f__validation", 0.999, 100, 16, seeds=(0, 1))
    assert recipes.choose(groups, "fast", reports)["why"] == "incomplete"
    del groups["fast_f__validation"]
    assert recipes.choose(groups, "fast", reports)["chosen"] is None
    assert recipes.summary_record({}, reports) is None


def test_runs_started_before_the_plan_are_flagged(reports):
    rows = recipes.choose(_fast(), "fast", reports)["rows"]
    assert recipes.plan_first(rows)
    early = recipes.choose(_fast(started="2026-12-07T02:40:14"), "fast", reports)["rows"]
    assert not recipes.plan_first(early)


@pytest.mark.parametrize("commit,time", [(recipes.PLAN_COMMIT, recipes.PLAN_TIME)] +
                         [c for c in recipes.CHOICE.values() if c])
def test_the_commit_times_the_report_states_are_the_ones_git_knows(commit, time):
    r = subprocess.run(["git", "-C", str(PROJECT_ROOT), "log", "-1", "--format=%cI", commit],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no git history here (not a clone)")
    assert r.stdout.strip() == time
    assert (PROJECT_ROOT / recipes.PLAN_FILE).is_file()


def test_a_confirmation_run_started_before_its_choice_is_flagged(reports):
    choice_time = recipes.CHOICE["fast"][1][:19]
    groups = {"confirm_fast_final__validation": _group("confirm_fast_final__validation", 0.99, 250, 20,
                                                       seeds=(18, 19, 20), started="2026-12-07T06:00:00")}
    facts = recipes.confirmation_facts(groups, "fast", reports)
    assert facts["choice_first"] and facts["paths"]["fp32"]["seeds"] == [18, 19, 20]
    groups["confirm_fast_final__validation"]["runs"][1]["started"] = choice_time
    assert not recipes.confirmation_facts(groups, "fast", reports)["choice_first"]
    # seeds 18-20 in an exploration group: not fresh
    assert recipes.fresh_seeds(groups)
    groups["fast_e__validation"] = _group("fast_e__validation", 0.99, 250, 20, seeds=(0, 18))
    assert not recipes.fresh_seeds(groups)


def test_the_picked_against_final_observation_says_what_its_intervals_hold(reports):
    def group(name, pairs):   # (picked, final) held-out accuracy per seed
        g = _group(name, 0.99, 100, 100, seeds=tuple(range(len(pairs))))
        for r, (p, f) in zip(g["runs"], pairs):
            r.update(heldout_acc=p, final_heldout_acc=f, selected_epoch=50)
        return g

    clear = {"confirm_improved__validation": group("confirm_improved__validation",
                                                   [(0.990, 0.993), (0.991, 0.994), (0.992, 0.995)])}
    rows = recipes.picked_vs_final(clear)
    assert rows[0]["delta"]["mean"] == pytest.approx(0.003) and rows[0]["final_better"] == 3
    assert not rows[0]["delta_holds_zero"]                       # +0.3 pp on every seed: the interval excludes 0
    noisy = {"confirm_improved__validation": group("confirm_improved__validation",
                                                   [(0.990, 0.995), (0.992, 0.991), (0.991, 0.992)])}
    assert recipes.picked_vs_final(noisy)[0]["delta_holds_zero"]
    mixed = noisy | {"lever_combined_e100__validation": group("lever_combined_e100__validation",
                                                              [(0.995, 0.990), (0.994, 0.993), (0.996, 0.992)])}
    facts = recipes.report_facts(mixed | _fast(), reports)
    assert facts["all_deltas_hold_zero"] is False or facts["all_final_higher"] is False
    assert facts["all_final_higher"] is False and facts["pvf_seeds"] == [3, 3]


def _confirm(name, seeds, heldout, confirm, started="2026-12-08T06:00:00"):
    """A confirmation group whose runs have these held-out and confirmation-set accuracies, seed by seed."""
    g = _group(name, 0.995, 1200, 100, seeds=tuple(seeds), started=started)
    for r, h, c in zip(g["runs"], heldout, confirm):
        r.update(heldout_acc=h, confirm_acc=c)
    return g


def test_best_is_judged_against_the_seed_configuration_on_the_same_seeds(reports, monkeypatch):
    monkeypatch.setitem(recipes.CHOICE, "best", ("abc1234", "2026-12-08T05:00:00+00:00"))
    seeds = recipes.CONFIRM["best"]["seeds"]
    best = _confirm("confirm_best__validation", seeds, [0.996, 0.995, 0.9955, 0.9962, 0.9951],
                    [0.994, 0.993, 0.995, 0.994, 0.993])
    base = _confirm(recipes.CONFIRM["best"]["baseline"]["group"], seeds, [0.988] * 5,
                    [0.985, 0.986, 0.984, 0.985, 0.986])
    groups = {"confirm_best__validation": best, base["group"]: base}
    facts = recipes.confirmation_facts(groups, "best", reports)
    row = facts["paths"]["fp32"]
    assert row["delta_ok"] and row["delta_confirm"]["mean"] == pytest.approx(0.0086)
    assert row["mean_met"] and row["floor_met"] and row["met"] and facts["choice_first"]
    assert facts["baseline"]["seeds"] == list(seeds) and recipes.fresh_seeds(groups)
    # no baseline yet: no Δ, so not met whatever the held-out figures
    alone = recipes.confirmation_facts({"confirm_best__validation": best}, "best", reports)["paths"]["fp32"]
    assert alone["delta_confirm"] is None and not alone["met"]
    # the seed configuration on three of the five seeds: the Δ is shown, not judged
    partial = base | {"runs": base["runs"][:3]}
    row = recipes.confirmation_facts(groups | {base["group"]: partial}, "best", reports)["paths"]["fp32"]
    assert row["delta_seeds"] == [13, 14, 15] and not row["delta_judged"] and not row["judged"] and not row["met"]
    # a Δ whose interval reaches 0: the third target is missed
    for r, c in zip(base["runs"], [0.994, 0.994, 0.994, 0.985, 0.992]):
        r["confirm_acc"] = c
    row = recipes.confirmation_facts(groups, "best", reports)["paths"]["fp32"]
    assert not row["delta_ok"] and not row["met"] and row["mean_met"] and row["judged"]
    # one seed below the 99.40 % floor
    best["runs"][2]["heldout_acc"] = 0.9935
    assert recipes.confirmation_facts(groups, "best", reports)["paths"]["fp32"]["below_floor"] == [15]
    # a baseline run that started before the choice was committed
    base["runs"][0]["started"] = "2026-12-08T04:00:00"
    assert not recipes.confirmation_facts(groups, "best", reports)["choice_first"]


def test_the_published_ensemble_is_its_own_row_once_its_members_are_the_confirmation_seeds(reports):
    seeds = list(recipes.CONFIRM["best"]["seeds"])
    assert recipes.confirmation_facts({}, "best", reports)["ensemble"] is None
    folder = reports.run("ensemble")
    folder.mkdir(parents=True)
    manifest = {"members": [f"seed{s}" for s in seeds], "seeds": seeds, "threshold": 0.5,
                "sources": [f"/x/experiments/sweeps/confirm_best__validation/seed{s}" for s in seeds],
                "sets": {"val": {"acc": 0.997}, "heldout": {"acc": 0.9958, "ci95": [0.9950, 0.9966]}}}
    (folder / "ensemble.json").write_text(json.dumps(manifest))
    row = recipes.confirmation_facts({}, "best", reports)["ensemble"]
    assert row["matches"] and row["heldout_acc"] == 0.9958 and not row["aim_met"] and row["short_by"] == pytest.approx(0.0002)
    assert row["members"] == 5 and row["sets"]["val"]["acc"] == 0.997
    # an ensemble of other runs is not the confirmation's row: other seeds, or the seed configuration's
    # runs on the same seeds, or runs of two groups
    base_runs = [f"/x/experiments/sweeps/confirm_best_seed__validation/seed{s}" for s in seeds]
    mixed = manifest["sources"][:4] + [manifest["sources"][4].replace("__validation/", "__validation_bf16/")]
    for other in ({"seeds": [0, 1, 2, 3, 4]}, {"sources": base_runs}, {"sources": mixed}):
        (folder / "ensemble.json").write_text(json.dumps(manifest | other))
        assert recipes.confirmation_facts({}, "best", reports)["ensemble"]["matches"] is False, other


def test_the_best_baseline_is_the_seed_configuration_unchanged():
    from mnist_pairs.config import load_config

    spec = recipes.CONFIRM["best"]["baseline"]
    assert spec["group"] == f"{spec['params'].split('/')[-1][:-5]}__validation"
    assert load_config(spec["params"]) == load_config("params/confirm_seed.yaml")


@pytest.mark.parametrize("recipe", [name for name, choice in recipes.CHOICE.items() if choice])
def test_a_confirmation_trains_the_candidate_its_rule_chose(recipe):
    """The confirmation params file, committed with the choice, is the candidate that reports/summary.json
    says the plan's rule chose, unchanged (only what is scored may be added: the confirmation set)."""
    import dataclasses

    from mnist_pairs.config import load_config

    chosen = json.loads(Reports().summary.read_text())["recipes"]["recipes"][recipe]["chosen"]
    assert chosen, f"summary.json chose no {recipe} candidate, yet recipes.CHOICE records a choice"
    candidate = load_config(f"params/{chosen.split('__')[0]}.yaml")
    confirm = load_config(recipes.CONFIRM[recipe]["params"])
    assert dataclasses.replace(confirm, confirm_pairs=candidate.confirm_pairs) == candidate


def test_the_published_model_is_the_planned_seed_trained_as_its_confirmation_group():
    group = {"runs": [{"seed": 13}, {"seed": 14}], "config": {"model": "siamese_deep", "epochs": 75, "confirm_pairs": 40000}}
    run = {"cfg": {"seed": 13, "model": "siamese_deep", "epochs": 75, "confirm_pairs": 40000, "out_dir": "x"}}
    assert recipes.published_as_planned(run, group)
    assert not recipes.published_as_planned({"cfg": run["cfg"] | {"seed": 14}}, group)          # another seed
    assert not recipes.published_as_planned({"cfg": run["cfg"] | {"epochs": 100}}, group)       # trained otherwise
    assert not recipes.published_as_planned({"cfg": run["cfg"] | {"confirm_pairs": 0}}, group)  # scored otherwise
    assert not recipes.published_as_planned(run, group | {"runs": [{"seed": 14}]})              # seed 13 not run yet
    assert not recipes.published_as_planned(run, None)


def test_the_committed_summary_holds_each_confirmation_as_its_runs_judge_it():
    """reports/summary.json keeps each recipe's confirmation (targets' verdicts, paired Δ, ensemble row),
    and it is what the committed runs and the published ensemble give now: not a stale copy."""
    summary = json.loads(Reports().summary.read_text())
    kept = summary["recipes"]["confirmations"]
    assert set(kept) == set(recipes.CONFIRM)
    for name in recipes.CONFIRM:
        now = json.loads(json.dumps(recipes.confirmation_facts(summary["groups"], name, Reports())))
        assert kept[name] == now, name
    best = kept["best"]
    if best["paths"].get("fp32", {}).get("judged"):
        assert best["ensemble"]["matches"] and best["ensemble"]["seeds"] == list(recipes.CONFIRM["best"]["seeds"])
        assert best["paths"]["fp32"]["delta_judged"] and len(best["baseline"]["seeds"]) == 5
