"""Training on real MNIST: run folders, checkpoints, resume, repeatable evaluation, a smoke run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_pairs import hardware as H
from mnist_pairs import train as T
from mnist_pairs.config import Config, ConfigError
from mnist_pairs.data import load_data
from mnist_pairs.runs import Run

TINY = dict(epochs=3, train_pairs=512, test_pairs=200, val_pairs=200, val_images=200, heldout_pairs=400,
            batch_size=64)
QUIET = dict(log=lambda m: None)


def _tiny(tmp_path, **kw):
    return Config(out_dir=str(tmp_path / "runs"), **{**TINY, **kw})


def _killed_after(tmp_path, monkeypatch, epoch: int, **kw):
    """The folder of a run of _tiny(**kw) named "killed", interrupted as epoch + 1 starts."""
    real_epoch = T.train_one_epoch

    def killed(*args, **kwargs):
        if args[5] == epoch + 1:
            raise KeyboardInterrupt("killed")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", killed)
    cfg = _tiny(tmp_path, run_name="killed", **kw)
    with pytest.raises(KeyboardInterrupt):
        T.fit(cfg, **QUIET)
    monkeypatch.setattr(T, "train_one_epoch", real_epoch)
    return cfg.out_path / "killed"


def _strip_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory, mnist_root):
    """One tiny run of one epoch, shared by the tests that only read it."""
    return T.fit(_tiny(tmp_path_factory.mktemp("one"), epochs=1, run_name="rt"), **QUIET)


def test_run_folder_contents_and_checkpoint_round_trip(one_epoch, subset):
    run, cfg = one_epoch, _tiny(one_epoch.dir.parent.parent, epochs=1, run_name="rt")
    for name in ("config.yaml", "history.json", "best.pt", "last.pt", "env.json", "scores.npz", "results.json"):
        assert (run.dir / name).is_file(), name
    assert not (run.dir / "figures").exists()  # fit trains and writes the run; it draws nothing
    precision = H.resolve_precision(cfg, torch.device("cpu"))
    assert run.cfg == cfg.replace(device="cpu", precision=precision)   # config.yaml records what ran
    assert run.env["precision"] == precision and run.env["torch"] == torch.__version__ and "git_commit" in run.env
    assert list(run.history.index) == [1]
    assert set(run.records[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc",
                                   "test_loss", "test_acc", "test_auc", "lr", "seconds"}

    model = run.model()
    x = subset.test_images[:32]
    again = T.build_model("siamese").eval()
    again.load_state_dict(torch.load(run.dir / "best.pt", weights_only=True)["model"])
    with torch.no_grad():
        assert torch.equal(again(x, x.flip(0)), model(x, x.flip(0)))
    res = run.results
    assert res["selected_epoch"] == 1 and res["selection"] == "val" and res["protocol"] == "validation"
    assert res["best_val"]["acc"] == run.records[0]["val_acc"] and res["best_test"]["acc"] == run.records[0]["test_acc"]
    lo, hi = res["best_heldout"]["ci95"]
    assert lo <= res["best_heldout"]["acc"] <= hi and res["best_heldout"]["pairs"] == 400
    assert set(run.scores()) == {f"{w}_{s}" for w in ("best", "final") for s in ("val", "test", "heldout")}
    with pytest.raises(ConfigError, match="exists"):
        T.fit(cfg, **QUIET)


def test_given_data_and_model_are_the_ones_used_and_others_refused(one_epoch, tmp_path):
    cfg = _tiny(tmp_path, epochs=1, run_name="given")
    data, model = load_data(cfg, **QUIET), T.new_model(cfg)
    run = T.fit(cfg, data=data, model=model, **QUIET)
    assert _strip_time(run.records) == _strip_time(one_epoch.records)       # the same run as fit(cfg)
    last = run.checkpoint("last")["model"]
    assert all(torch.equal(v, last[k]) for k, v in model.state_dict().items())  # the object given is what trained
    with pytest.raises(ConfigError, match=r"another config .*\['protocol'\]"):
        T.fit(cfg.replace(run_name="x"), data=load_data(cfg.replace(protocol="test"), **QUIET), **QUIET)
    with pytest.raises(ConfigError, match="not new_model"):
        T.fit(cfg.replace(run_name="y"), model=model, **QUIET)              # trained already
    with pytest.raises(ConfigError, match="not new_model"):
        T.fit(cfg.replace(run_name="z"), model=T.new_model(cfg.replace(seed=1)), **QUIET)


def test_evaluation_is_repeatable_in_eval_mode(one_epoch):
    run = one_epoch
    device = torch.device("cpu")
    data = T.DeviceData(load_data(run.cfg, **QUIET), run.cfg, device)
    model = run.model().to(memory_format=H.memory_format(run.cfg))
    first = T.score(model, data.eval_images["test"], data.cpu.sets["test"], run.cfg, device, run.cfg.precision)
    model.train()  # score() must put the model in eval mode itself (BatchNorm, dropout)
    second = T.score(model, data.eval_images["test"], data.cpu.sets["test"], run.cfg, device, run.cfg.precision)
    assert torch.equal(first, second)
    np.testing.assert_array_equal(run.scores()["best_test"], first.numpy())   # the saved scores are these


def test_resume_equals_an_uninterrupted_run_across_lr_cuts_and_best_changes(tmp_path, monkeypatch):
    kw = dict(epochs=6, lr_patience=0, lr=3e-3)
    full = T.fit(_tiny(tmp_path, run_name="full", **kw), **QUIET).records
    lrs = [h["lr"] for h in full]
    assert len(set(lrs)) > 1, "the config must cut the LR for this test to cover it"
    best, changes = -1, 0
    for h in full:
        if h["val_acc"] > best:
            best, changes = h["val_acc"], changes + 1
    assert changes >= 2, "the best checkpoint must change for this test to cover it"
    cut = next(h["epoch"] for h in full if h["lr"] < lrs[0])   # stop right after the LR was cut

    run_dir = _killed_after(tmp_path, monkeypatch, cut, **kw)
    assert [h["epoch"] for h in Run(run_dir).records] == list(range(1, cut + 1))
    resumed = T.fit(resume=run_dir, **QUIET)
    assert _strip_time(resumed.records) == _strip_time(full)
    full_run = Run(run_dir.parent / "full")
    for which in ("best", "last"):
        a, b = full_run.checkpoint(which)["model"], resumed.checkpoint(which)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), which
    assert len(resumed.env["resumes"]) == 1 and resumed.env["resumes"][0]["from_epoch"] == cut


def test_resume_rejects_a_different_config_and_allows_more_epochs(tmp_path):
    run = T.fit(_tiny(tmp_path, epochs=1, run_name="r"), **QUIET)
    with pytest.raises(ConfigError, match="only"):
        T.fit(resume=run.dir, overrides={"lr": 1e-3}, **QUIET)
    longer = T.fit(resume=run.dir, overrides={"epochs": 2}, **QUIET)
    assert [h["epoch"] for h in longer.records] == [1, 2] and longer.cfg.epochs == 2


def test_test_protocol_selects_on_the_test_pairs(tmp_path):
    run = T.fit(_tiny(tmp_path, protocol="test", run_name="t"), **QUIET)
    h = run.records
    assert "val_acc" not in h[0]
    best = max(h, key=lambda r: r["test_acc"])
    assert run.results["selected_epoch"] == best["epoch"] and run.results["selection"] == "test"


def test_shared_encoding_pairs_are_balanced_distinct_and_correctly_labelled():
    from mnist_pairs.shared_encoding import batch_pairs

    labels = torch.randint(0, 10, (256,), generator=torch.Generator().manual_seed(0))
    ia, ib, y = batch_pairs(labels, torch.Generator().manual_seed(1))
    same = int(sum(int(c) * (int(c) - 1) // 2 for c in torch.bincount(labels, minlength=10)))
    assert int(y.sum()) == same and len(y) == 2 * same            # every same pair, as many different
    assert (ia < ib).all() and torch.equal(y, (labels[ia] == labels[ib]).float())
    assert len(set(zip(ia.tolist(), ib.tolist()))) == len(y)       # no pair twice


def test_shared_encoding_run_learns_and_keeps_its_rules(tmp_path):
    with pytest.raises(ConfigError, match="needs a Siamese model"):
        Config(pairing="shared", model="concat")
    run = T.fit(_tiny(tmp_path, pairing="shared", epochs=2, subset_fraction=0.02, run_name="sh"), **QUIET)
    h = run.records
    assert h[1]["train_loss"] < h[0]["train_loss"] and h[1]["val_acc"] > 0.6
    assert h[0]["train_pairs"] > 10 * TINY["train_pairs"]          # many pairs from few encodings


def test_cosine_schedule_and_weight_ema_are_scored_saved_and_resumed(tmp_path, monkeypatch):
    import math

    from mnist_pairs.models import build_model

    kw = dict(lr_schedule="cosine", ema=0.9, epochs=3, lr=2e-3, lr_min=1e-4)
    with pytest.raises(ConfigError, match="ema must be in"):
        _tiny(tmp_path, ema=1.0)
    full = T.fit(_tiny(tmp_path, run_name="full", **kw), **QUIET)
    lrs = [h["lr"] for h in full.records]                        # lr of each epoch, before its step
    assert lrs == pytest.approx([1e-4 + (2e-3 - 1e-4) * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)])
    last = full.checkpoint("last")
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k != "n_averaged"}
    assert not all(torch.equal(averaged[k], v) for k, v in last["model"].items())   # EMA is not the raw weights
    # the averaged weights are what was scored: they reproduce the last epoch's validation accuracy
    assert all(torch.equal(full.model("last").state_dict()[k], averaged[k]) for k in averaged)
    fmt = H.memory_format(full.cfg)     # scored as in training: in bf16 the layout changes the rounding
    data = T.DeviceData(load_data(full.cfg, lambda m: None), full.cfg, torch.device("cpu"))
    ev = T.evaluate(full.model("last").to(memory_format=fmt), data, full.cfg, torch.device("cpu"),
                    full.cfg.precision, names=("val",))
    assert (ev["val_acc"], ev["val_loss"]) == (full.records[-1]["val_acc"], full.records[-1]["val_loss"])
    # best.pt holds the averaged weights of the selected epoch, whichever it is: they score what that epoch scored
    best = T.evaluate(full.model("best").to(memory_format=fmt), data, full.cfg, torch.device("cpu"),
                      full.cfg.precision, names=("val",))
    selected = full.records[full.results["selected_epoch"] - 1]
    assert (best["val_acc"], best["val_loss"]) == (selected["val_acc"], selected["val_loss"])

    resumed = T.fit(resume=_killed_after(tmp_path, monkeypatch, 2, **kw), **QUIET)   # killed after epoch 2
    assert _strip_time(resumed.records) == _strip_time(full.records)
    assert all(torch.equal(resumed.checkpoint("last")["ema"][k], v) for k, v in last["ema"].items())
    assert build_model("siamese").state_dict().keys() == averaged.keys()


def test_supcon_loss_matches_its_definition_and_rewards_clustered_embeddings():
    import math

    from mnist_pairs.shared_encoding import supcon_loss

    torch.manual_seed(0)
    e, labels = torch.randn(12, 8), torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 0, 2, 4, 1])   # digit 4 has no partner
    z = torch.nn.functional.normalize(e, dim=1)
    per_image = []
    for i in range(12):
        others = [j for j in range(12) if j != i]
        denom = sum(math.exp(float(z[i] @ z[j]) / 0.1) for j in others)
        pos = [j for j in others if labels[j] == labels[i]]
        if pos:
            per_image.append(-sum(float(z[i] @ z[j]) / 0.1 - math.log(denom) for j in pos) / len(pos))
    assert float(supcon_loss(e, labels, 0.1)) == pytest.approx(sum(per_image) / len(per_image), rel=1e-5)
    clustered = torch.nn.functional.one_hot(labels, 8).float() + 0.01 * torch.randn(12, 8)
    assert float(supcon_loss(clustered, labels, 0.1)) < float(supcon_loss(e, labels, 0.1))
    with pytest.raises(ConfigError, match="supcon_weight > 0 needs pairing 'shared'"):
        Config(supcon_weight=1.0)


# a 2 % subset: an epoch of shared encoding is one pass over its 1,000 training images. Two threads, as
# the study's runs use: with one, a backward that adds rows in thread order (e[ia] in place of
# index_select in train_step) repeats bit for bit and these tests could not see it.
DEEP = dict(model="siamese_deep", pairing="shared", aug_elastic_alpha=3.0, supcon_weight=0.5, epochs=2,
            subset_fraction=0.02, num_threads=2)


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    """The improved configuration's parts (deeper encoder, shared encoding, elastic, SupCon), 2 tiny epochs."""
    return T.fit(_tiny(tmp_path_factory.mktemp("deep"), run_name="full", **DEEP), **QUIET)


def test_deeper_encoder_elastic_augmentation_and_supcon_learn(deep_run):
    h = deep_run.records
    assert h[1]["train_loss"] < h[0]["train_loss"] and h[1]["val_acc"] > 0.6
    from mnist_pairs.models import SiameseDeepNet, count_parameters

    assert isinstance(deep_run.model(), SiameseDeepNet) and count_parameters(deep_run.model()) == 189_025


def _same_weights(a: Run, b: Run) -> None:
    for which in ("best", "last"):
        wa, wb = a.checkpoint(which)["model"], b.checkpoint(which)["model"]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), which


def test_deeper_encoder_run_resumes_identically(deep_run, tmp_path, monkeypatch):
    resumed = T.fit(resume=_killed_after(tmp_path, monkeypatch, 1, **DEEP), **QUIET)     # killed after epoch 1
    assert _strip_time(resumed.records) == _strip_time(deep_run.records)
    _same_weights(resumed, deep_run)


def test_two_fresh_runs_with_two_threads_are_identical(deep_run, tmp_path):
    again = T.fit(_tiny(tmp_path, run_name="again", **DEEP), **QUIET)
    assert again.env["torch_threads"] == deep_run.env["torch_threads"] == 2
    assert _strip_time(again.records) == _strip_time(deep_run.records)
    _same_weights(again, deep_run)


def test_resume_under_another_thread_count_is_refused_unless_asked(tmp_path, monkeypatch):
    kw = dict(epochs=2, num_threads=1)
    run_dir = _killed_after(tmp_path, monkeypatch, 1, **kw)
    assert Run(run_dir).checkpoint("last")["numeric_path"]["threads"] == 1
    with pytest.raises(ConfigError, match=r"threads 1 -> 2.*OMP_NUM_THREADS=1.*--resume-anyway"):
        T.fit(resume=run_dir, overrides={"num_threads": 2}, **QUIET)
    assert [h["epoch"] for h in Run(run_dir).records] == [1] and "resumes" not in Run(run_dir).env
    run = T.fit(resume=run_dir, overrides={"num_threads": 2}, resume_anyway=True, **QUIET)
    assert [h["epoch"] for h in run.records] == [1, 2]
    assert run.env["resumes"][0]["numeric_path_changed"] == {"threads": [1, 2]}


def test_the_final_checkpoint_rule_keeps_the_last_epoch_whatever_the_validation_scores(tmp_path):
    kw = dict(epochs=3, lr=3e-3, checkpoint="final")
    run = T.fit(_tiny(tmp_path, run_name="final", **kw), **QUIET)
    assert run.results["selected_epoch"] == 3 and run.cfg.checkpoint == "final"
    best, last = run.checkpoint("best"), run.checkpoint("last")
    assert best["epoch"] == 3 and all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    np.testing.assert_array_equal(run.scores()["best_heldout"], run.scores()["final_heldout"])
