"""The confirmation set and plan (mnist_pairs/study/confirmation.py): the pairs are the registered ones,
drawn from MNIST training images outside the subset only, scored once at the end of a run and
never per epoch; the verdict follows the registered rule."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mnist_pairs.study import confirmation as CF
from mnist_pairs import train as T
from mnist_pairs.config import Config, load_config
from mnist_pairs.data import load_data
from mnist_pairs.subset import digest
from mnist_pairs.runs import Run
from mnist_pairs.stats import interval
from mnist_pairs.study.summary import run_row


def test_confirmation_pairs_are_the_registered_ones_outside_the_subset(mnist_root):
    for params in ("params/confirm_improved.yaml", "params/confirm_seed.yaml"):
        assert load_config(params).confirm_pairs == CF.PLAN["confirm_pairs"]
    data = load_data(Config(confirm_pairs=CF.PLAN["confirm_pairs"], data_seed=CF.PLAN["data_seed"]), log=lambda m: None)
    sub, c = data.subset, data.sets["confirm"]
    assert digest(torch.stack([c.a, c.b, c.y.long()]).numpy()) == CF.CONFIRM_PAIRS_SHA256
    assert len(c.labels) == 54_000 and len(c.y) == 40_000 and int(c.y.sum()) == 20_000
    assert bool((c.y == (c.labels[c.a] == c.labels[c.b]).float()).all()) and bool((c.a != c.b).all())
    # its images are MNIST training images, none of them in the subset (train, validation) or the test split
    from mnist_pairs.mnist import load_mnist

    tr_x, _ = load_mnist(mnist_root, train=True, verify=False)
    outside = np.setdiff1d(np.arange(60_000), sub.train_index)
    assert torch.equal(c.images, (tr_x[outside].float() / 255).unsqueeze(1))
    # notebook 01 shows every fixed pair set of a run, the confirmation set included
    from mnist_pairs.tables import balance_table

    assert balance_table(Config(train_pairs=64), data).loc["确认"].tolist() == [40_000, 20_000, 20_000, 0]


@pytest.fixture(scope="module")
def confirm_run(tmp_path_factory, mnist_root) -> Run:
    """One tiny finished run that scores 400 confirmation pairs (seed 5, as a confirmation run)."""
    group = tmp_path_factory.mktemp("sweeps") / CF.PLAN["improved"]
    return T.fit(Config(seed=5, epochs=1, train_pairs=512, test_pairs=200, val_pairs=200, heldout_pairs=200,
                        confirm_pairs=400, batch_size=64, out_dir=str(group), run_name="seed5"), log=lambda m: None)


def test_a_run_scores_the_confirmation_set_once_at_the_end(confirm_run):
    assert "confirm" not in T.EPOCH_SETS
    run = confirm_run
    assert not any("confirm" in k for k in run.records[0])                  # never scored per epoch
    r = run.results["best_confirm"]
    assert r["pairs"] == 400 and r["images"] == 54_000 and r["ci95"][0] <= r["acc"] <= r["ci95"][1]
    assert "best_confirm" in run.scores() and "final_confirm" in run.scores()
    row = run_row(run)
    assert row["confirm_acc"] == r["acc"] and row["confirm_pairs"] == 400 and row["confirm_ci95"] == r["ci95"]
    assert row["started"] <= row["finished"]


def test_pairs_seen_counts_sampled_and_shared_runs(confirm_run, tmp_path):
    """A pair-sampled run's history has no train_pairs (its config's count per epoch is used); a
    shared-encoding run's history records each epoch's."""
    import json
    import shutil

    group = tmp_path / "g"
    shutil.copytree(confirm_run.dir, group / "seed5")
    assert "train_pairs" not in confirm_run.records[0]
    assert CF.pairs_seen(group) == {"min": 512, "max": 512, "mean": 512}           # 1 epoch x 512 pairs
    (group / "seed6").mkdir()
    shutil.copy(confirm_run.dir / "config.yaml", group / "seed6" / "config.yaml")
    (group / "seed6" / "history.json").write_text(json.dumps([{"train_pairs": 1000}, {"train_pairs": 1100}]))
    assert CF.pairs_seen(group) == {"min": 512, "max": 2100, "mean": (512 + 2100) / 2}


def _group(name: str, seeds, confirm, heldout) -> dict:
    runs = [{"seed": s, "confirm_acc": c, "heldout_acc": h, "val_acc": h} for s, c, h in zip(seeds, confirm, heldout)]
    return {"group": name, "runs": runs, "mean": {"heldout_acc": interval(heldout)["mean"]}}


@pytest.mark.parametrize("improved, heldout, seeds, confirmed", [
    ([0.995, 0.994, 0.996, 0.995, 0.994], [0.994] * 5, [5, 6, 7, 8, 9], True),
    ([0.995, 0.994, 0.996, 0.995, 0.994], [0.992] * 5, [5, 6, 7, 8, 9], False),   # held-out target missed
    ([0.990, 0.994, 0.988, 0.995, 0.994], [0.994] * 5, [5, 6, 7, 8, 9], False),   # Δ interval reaches 0
    ([0.995, 0.994, 0.996, 0.995], [0.994] * 4, [5, 6, 7, 8], False),             # a seed missing
])
def test_the_verdict_follows_the_registered_rule(improved, heldout, seeds, confirmed):
    base = _group(CF.PLAN["baseline"], [5, 6, 7, 8, 9], [0.990, 0.991, 0.989, 0.990, 0.992], [0.989] * 5)
    imp = _group(CF.PLAN["improved"], seeds, improved, heldout)
    v = CF.outcome({base["group"]: base, imp["group"]: imp})
    assert v["confirmed"] is confirmed
    assert v["delta_confirm"]["n"] == len(seeds)
    assert CF.outcome({base["group"]: base}) is None


def test_the_published_seed_is_picked_on_validation_accuracy_only():
    g = {"runs": [{"seed": 5, "val_acc": 0.99, "heldout_acc": 0.999}, {"seed": 6, "val_acc": 0.995, "heldout_acc": 0.98},
                  {"seed": 7, "val_acc": 0.995, "heldout_acc": 0.97}]}
    assert CF.published_seed(g) == 6


def test_rule_events_are_the_commits_git_knows(tmp_path):
    """Each commit time the report's timeline states is the commit's own (when git can tell)."""
    import subprocess

    from mnist_pairs.study.ablation import RULE_EVENTS
    from mnist_pairs.paths import PROJECT_ROOT

    checked = 0
    for e in RULE_EVENTS:
        r = subprocess.run(["git", "-C", str(PROJECT_ROOT), "log", "-1", "--format=%cI", e["commit"]],
                           capture_output=True, text=True)
        if r.returncode == 0:
            assert r.stdout.strip() == e["time"], e
            checked += 1
    if not checked:
        pytest.skip("no git history here (not a clone)")
    assert CF.PLAN_COMMIT in [e["commit"] for e in RULE_EVENTS]


def test_the_determinism_fix_is_the_commit_git_knows():
    """The report dates the shared-encoding runs against this commit's time: it must be the commit's own."""
    import subprocess

    from mnist_pairs.paths import PROJECT_ROOT
    from mnist_pairs.study.repro import DETERMINISM_FIX

    r = subprocess.run(["git", "-C", str(PROJECT_ROOT), "log", "-1", "--format=%cI", DETERMINISM_FIX["commit"]],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no git history here (not a clone)")
    assert r.stdout.strip()[:19] == DETERMINISM_FIX["time"]


def test_timeline_lists_the_runs_finished_before_each_commit():
    from mnist_pairs.study.ablation import RULE_EVENTS, timeline

    t0 = RULE_EVENTS[0]["time"][:19]
    groups = {"lever_shared_e100__validation": {"runs": [{"seed": 0, "finished": "2000-01-01T00:00:00"},
                                                         {"seed": 1, "finished": t0}]}}
    first = timeline(groups)[0]
    assert first["finished_before"] == {"lever_shared_e100__validation": [0]}      # not the one at the same second
    assert timeline(groups)[-1]["finished_before"]["lever_shared_e100__validation"] == [0, 1]


def test_the_report_words_the_confirmation_as_its_facts_say(tmp_path, mnist_root):
    """Synthetic confirmation groups (rows of the committed seed configuration, renamed to seeds
    5-9 and given confirmation figures) in a copy of reports/: partial, then confirmed."""
    import copy
    import json
    import shutil

    from mnist_pairs.study import report as R
    from mnist_pairs.paths import REPORTS_DIR

    reports = tmp_path / "reports"
    shutil.copytree(REPORTS_DIR, reports)
    summary = json.loads((reports / "summary.json").read_text())
    base = summary["groups"]["seed_siamese__validation"]

    def fake(name, seeds, bump, plan_ok=True):
        g = copy.deepcopy(base)
        g["group"], g["name"] = name, name.split("__")[0]
        g["runs"] = [r | {"seed": s, "confirm_acc": r["heldout_acc"] + bump, "heldout_acc": r["heldout_acc"] + bump,
                          "started": "2026-11-29T20:00:00" if plan_ok else "2026-11-29T10:00:00"}
                     for s, r in zip(seeds, base["runs"])]
        for k in ("confirm_acc", "heldout_acc"):
            st = interval([r[k] for r in g["runs"]])
            g["mean"][k], g["sd"][k], g["ci95"][k] = st["mean"], st["sd"], st["ci95"]
        return g

    def render(groups):
        summary["groups"] |= groups
        (reports / "summary.json").write_text(json.dumps(summary))
        return R.render(R.collect(reports))

    text = render({CF.PLAN["baseline"]: fake(CF.PLAN["baseline"], [5, 6, 7, 8, 9], 0.0),
                   CF.PLAN["improved"]: fake(CF.PLAN["improved"], [5, 6], 0.012)})
    assert "确认运行尚未全部完成" in text and "改进模型：5、6" in text and "按预先登记的规则已确认" not in text
    text = render({CF.PLAN["improved"]: fake(CF.PLAN["improved"], [5, 6, 7, 8, 9], 0.012)})
    assert "**按预先登记的规则已确认。**" in text and "| +1.20 ± 0.00 |" in text, text[text.index("## 4. 改进模型"):][:3000]
    assert "所有确认运行都在登记之后开始" in text and "并非所有确认运行" not in text
    text = render({CF.PLAN["improved"]: fake(CF.PLAN["improved"], [5, 6, 7, 8, 9], 0.012, plan_ok=False)})
    assert "**并非所有确认运行都在登记之后开始**" in text


def test_shift_moves_images_and_fills_with_background():
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    assert torch.equal(CF.shift(x, 0, 0), x)
    down = CF.shift(x, 1, 0)
    assert torch.equal(down[..., 1:, :], x[..., :-1, :]) and not down[..., 0, :].any()
    left = CF.shift(x, 0, -1)
    assert torch.equal(left[..., :, :-1], x[..., :, 1:]) and not left[..., :, -1].any()


def test_tta_and_ensemble_on_two_tiny_confirmation_runs(confirm_run):
    """The tiny run, and a copy of it labelled seed 6 (the mechanics, not the gain, are tested)."""
    import shutil

    group = confirm_run.dir.parent
    shutil.copytree(group / "seed5", group / "seed6", dirs_exist_ok=True)
    cfg = group / "seed6" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("\nseed: 5\n", "\nseed: 6\n"))
    out = CF.measure_levers(group, log=lambda m: None)
    assert out["seeds"] == [5, 6] and out["pairs"] == {"val": 200, "heldout": 200, "confirm": 400}
    for r, seed in zip(out["runs"], (5, 6)):
        saved = Run(group / f"seed{seed}").results
        for name in CF.LEVER_SETS:   # the plain model, scored again here, is the run's selected model
            assert r[name]["plain"]["acc"] == pytest.approx(saved[f"best_{name}"]["acc"], abs=2 / 200)
    assert out["tta"]["val"]["delta"]["n"] == 2 and isinstance(out["tta_adopted"], bool)
    plain = out["runs"][0]["heldout"]["plain"]["acc"]     # two copies of one model: the ensemble is that model
    assert out["ensemble"]["heldout"]["acc"] == pytest.approx(plain, abs=2 / 200)
    assert out["ensemble"]["members"] == 2 and out["ensemble"]["params"] == 2 * out["params"]
    assert out["ensemble"]["heldout"]["ci95"][0] <= out["ensemble"]["heldout"]["acc"] <= out["ensemble"]["heldout"]["ci95"][1]
    assert out["tta_cost"]["forward_passes"] == len(CF.TTA_SHIFTS) and out["tta_cost"]["ratio"] > 1


def test_make_study_trains_the_published_confirmation_run_again():
    """params/improved.yaml (make study) is the `best` confirmation configuration on the seed the plan
    named, so a study's improved run can be held against that committed run, weights and all."""
    import json

    from mnist_pairs.paths import REPORTS_DIR
    from mnist_pairs.study.pipeline import STUDY_PARAMS
    from mnist_pairs.study.recipes import CONFIRM, PUBLISHED_RUN, published_as_planned

    assert PUBLISHED_RUN["params"] == "params/improved.yaml" in STUDY_PARAMS
    study, confirm = load_config(PUBLISHED_RUN["params"]), load_config(CONFIRM["best"]["params"])
    assert study.seed == PUBLISHED_RUN["seed"] == CONFIRM["best"]["seeds"][0]
    assert dataclasses.replace(study, seed=confirm.seed) == confirm
    group = json.loads((REPORTS_DIR / "summary.json").read_text())["groups"].get(PUBLISHED_RUN["group"])
    if group is None or PUBLISHED_RUN["seed"] not in [r["seed"] for r in group["runs"]]:
        pytest.skip("the published seed's confirmation run is not in reports/summary.json yet (make confirm-best)")
    ran = {k: group["config"][k] for k in ("device", "precision")}   # what a run records: auto resolved
    assert published_as_planned({"cfg": study.to_dict() | ran}, group)
    assert not published_as_planned({"cfg": dataclasses.replace(study, seed=14).to_dict() | ran}, group)
    assert not published_as_planned({"cfg": dataclasses.replace(study, epochs=study.epochs + 1).to_dict() | ran}, group)
