"""The confirmation set and plan (mnist_pairs/confirmation.py): the pairs are the registered ones,
drawn from MNIST training images outside the subset only, scored once at the end of a run and
never per epoch; the verdict follows the registered rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_pairs import confirmation as CF
from mnist_pairs import train as T
from mnist_pairs.config import Config, load_config
from mnist_pairs.data import digest, load_data
from mnist_pairs.summary import interval, run_row


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


def test_a_run_scores_the_confirmation_set_once_at_the_end(tmp_path, mnist_root):
    assert "confirm" not in T.EPOCH_SETS
    cfg = Config(epochs=1, train_pairs=512, test_pairs=200, val_pairs=200, heldout_pairs=200, confirm_pairs=400,
                 batch_size=64, out_dir=str(tmp_path), run_name="c")
    run = T.fit(cfg, log=lambda m: None)
    assert not any("confirm" in k for k in run.records[0])                  # never scored per epoch
    r = run.results["best_confirm"]
    assert r["pairs"] == 400 and r["images"] == 54_000 and r["ci95"][0] <= r["acc"] <= r["ci95"][1]
    assert "best_confirm" in run.scores() and "final_confirm" in run.scores()
    row = run_row(run)
    assert row["confirm_acc"] == r["acc"] and row["confirm_pairs"] == 400 and row["confirm_ci95"] == r["ci95"]
    assert row["started"] <= row["finished"]


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
