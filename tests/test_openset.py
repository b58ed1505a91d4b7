"""Open-set verification (train_classes), one-shot episodes, and Fashion-MNIST as a second dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_pairs import mnist as M
from mnist_pairs import openset as O
from mnist_pairs import train as T
from mnist_pairs.config import Config, ConfigError, load_config
from mnist_pairs.data import load_data

SMALL = dict(train_pairs=512, test_pairs=200, val_pairs=200, val_images=200, heldout_pairs=400, batch_size=64)


def test_unseen_classes_never_reach_training_or_selection(mnist_root):
    cfg = load_config("params/unseen_digits.yaml", **SMALL)
    assert cfg.seen_classes == tuple(range(8))
    data = load_data(cfg, log=lambda m: None)
    assert set(data.train_labels.tolist()) == set(range(8))
    val = data.sets["val"]
    assert set(val.labels.tolist()) == set(range(8))
    assert val.y.sum() == len(val.y) / 2
    assert {8, 9} <= set(data.sets["heldout"].labels.tolist())    # scored on all ten
    full = load_data(cfg.replace(train_classes=""), log=lambda m: None)
    assert len(data.train_labels) == int((full.train_labels < 8).sum())


def test_openset_pair_types(subset):
    labels = subset.heldout_labels
    a, b, y, kinds = O.openset_pairs(labels, list(range(8)), 400, seed=42)
    la, lb = labels[a].numpy(), labels[b].numpy()
    assert (y.numpy() == (la == lb)).all()
    assert (a != b).all()
    for kind, want in {"seen–seen same": (la < 8) & (la == lb), "8–8": (la == 8) & (lb == 8),
                       "9–9": (la == 9) & (lb == 9), "unseen–seen": (la >= 8) & (lb < 8)}.items():
        assert ((kinds == kind) == want).all(), kind
    assert ((kinds == "unseen–unseen different") == ((la >= 8) & (lb >= 8) & (la != lb))).all()
    assert (kinds == "seen–seen different").sum() == 200 and (kinds == "unseen–seen").sum() == 200
    again = O.openset_pairs(labels, list(range(8)), 400, seed=42)
    assert torch.equal(a, again[0]) and torch.equal(b, again[1])   # fixed by the data seed


def test_oneshot_episodes_hold_one_reference_per_class(subset):
    labels = subset.heldout_labels
    refs, qs = O.oneshot_episodes(labels, 10, 50, 20, seed=42)
    assert refs.shape == (50, 10) and qs.shape == (50, 20)
    assert (labels[refs] == torch.arange(10)).all()
    assert not (qs[:, :, None] == refs[:, None, :]).any()


def test_train_classes_rules():
    with pytest.raises(ConfigError, match="protocol 'validation'"):
        Config(train_classes="0-7", protocol="test")
    with pytest.raises(ConfigError, match="2 to 8"):
        Config(train_classes="0-8")
    with pytest.raises(ConfigError, match="range like"):
        Config(train_classes="zero")


@pytest.mark.slow
def test_an_unseen_digit_run_reports_pair_types_and_oneshot(tmp_path):
    cfg = load_config("params/unseen_digits.yaml", epochs=2, out_dir=str(tmp_path), run_name="u", **SMALL)
    res = T.fit(cfg, log=lambda m: None).results["openset"]
    types = res["pair_types"]
    assert {"seen–seen same", "seen–seen different", "8–8", "9–9", "unseen–unseen different", "unseen–seen"} == set(types)
    assert sum(t["pairs"] for t in types.values()) == 2 * O.SET_PAIRS + O.SET_PAIRS // 2
    assert all(0 <= t["acc"] <= 1 for t in types.values())
    assert 0.5 < res["auc"]["seen–seen"] <= 1 and 0 < res["auc"]["with unseen"] <= 1
    one = res["oneshot"]
    assert one["ways"] == 10 and one["acc"] > 0.2       # chance is 0.1
    assert 0 <= one["acc_unseen"] <= 1 and one["acc_seen"] > one["acc_unseen"]


def test_fashion_mnist_from_a_source_verified(mnist_root, tmp_path):
    """The Debian package (or files already there) gives the four verified Fashion-MNIST files."""
    folder = M.ensure_mnist(mnist_root, dataset="fashion_mnist", log=lambda m: None)
    assert folder == mnist_root / "FashionMNIST" / "raw"
    assert set(M.verify_mnist(mnist_root, "fashion_mnist").values()) == {"ok"}
    x, y = M.load_mnist(mnist_root, train=True, verify=False, dataset="fashion_mnist")
    assert x.shape == (60000, 28, 28) and y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert torch.bincount(y).tolist() == [6000] * 10
    # damage one file: it is rebuilt, and an impossible source list names every source
    bad = tmp_path / "fm"
    (bad / "FashionMNIST" / "raw").mkdir(parents=True)
    with pytest.raises(M.MNISTUnavailable, match="FashionMNIST.*Tried"):
        M.ensure_mnist(bad, dataset="fashion_mnist", sources=(("nothing", lambda r, d: None),), log=lambda m: None)


def test_fashion_subset_uses_its_own_caches(mnist_root):
    cfg = load_config("params/fashion_siamese.yaml", **SMALL)
    data = load_data(cfg, log=lambda m: None)
    mnist = load_data(cfg.replace(dataset="mnist"), log=lambda m: None)
    assert len(data.train_labels) == len(mnist.train_labels)
    assert not torch.equal(data.subset.train_images[:10], mnist.subset.train_images[:10])
    assert (mnist_root / "subsets" / "fashion_mnist_subset_seed42_frac0.1.json").is_file()
    np.testing.assert_array_equal(data.subset.train_index, mnist.subset.train_index)  # same draw, other images


def test_report_rows_follow_the_unseen_digits_of_the_group():
    from mnist_pairs.study.report import openset_rows

    kinds = ["seen–seen same", "seen–seen different", "5–5", "3–3", "unseen–unseen different", "unseen–seen"]
    o = {f"pair_types.{k}.{m}": {"mean": 0.9 if m != "pairs" else 100.0, "ci95": [0.8, 1.0]}
         for k in kinds for m in ("acc", "acc_at_threshold", "pairs")}
    labels = [row[0] for row in openset_rows({"openset": o})]
    assert labels == ["已见–已见，同类", "已见–已见，异类", "3–3（未见，同类）", "5–5（未见，同类）",
                      "未见数字之间（异类）", "未见数字对已见数字（异类）"]
    assert openset_rows(None) == [] and openset_rows({"openset": o})[2][1] == 100
