"""Training on real MNIST: checkpoints, resume, divergence, a smoke run that learns."""
from __future__ import annotations

import json

import pytest
import torch

from mnist_pairs import train as T
from mnist_pairs.config import Config, ConfigError, load_config
from mnist_pairs.paths import PARAMS_DIR

TINY = dict(epochs=3, train_pairs=512, test_pairs=200, batch_size=64)


def _tiny(tmp_path, **kw):
    return Config(out_dir=str(tmp_path / "runs"), **{**TINY, **kw})


def _strip_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_run_folder_contents_and_checkpoint_round_trip(tmp_path, subset):
    cfg = _tiny(tmp_path, epochs=1, run_name="rt")
    run = T.fit(cfg, log=lambda m: None)
    for name in ("config.yaml", "history.json", "best.pt", "last.pt", "env.json",
                 "figures/curves.png", "figures/confusion_matrix.png", "figures/sample_pairs.png"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml") == cfg
    env = json.loads((run / "env.json").read_text())
    assert env["parameters"] == 192_449 and env["torch"] == torch.__version__ and "git_commit" in env
    hist = T.read_history(run)
    assert [h["epoch"] for h in hist] == [1]
    assert set(hist[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_auc", "lr", "seconds"}

    model, _, ckpt = T.load_run(run, "best")
    x = subset.test_images[:32]
    with torch.no_grad():
        before = model(x, x.flip(0))
    state = torch.load(run / "best.pt", weights_only=True)
    again = T.build_model("siamese").eval()
    again.load_state_dict(state["model"])
    with torch.no_grad():
        assert torch.equal(again(x, x.flip(0)), before)
    assert ckpt["epoch"] == 1 and ckpt["test_acc"] == hist[0]["test_acc"]
    with pytest.raises(FileExistsError):
        T.fit(cfg, log=lambda m: None)


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    full = T.read_history(T.fit(_tiny(tmp_path, run_name="full"), log=lambda m: None))

    real_epoch = T.train_one_epoch

    def killed_at_3(*args, **kw):
        if args[5] == 3:
            raise KeyboardInterrupt("killed")
        return real_epoch(*args, **kw)

    monkeypatch.setattr(T, "train_one_epoch", killed_at_3)
    cfg = _tiny(tmp_path, run_name="killed")
    with pytest.raises(KeyboardInterrupt):
        T.fit(cfg, log=lambda m: None)
    run = cfg.out_path / "killed"
    assert [h["epoch"] for h in T.read_history(run)] == [1, 2]
    monkeypatch.setattr(T, "train_one_epoch", real_epoch)
    resumed = T.read_history(T.fit(resume=run, log=lambda m: None))
    assert _strip_time(resumed) == _strip_time(full)


def test_resume_rejects_a_different_config(tmp_path):
    run = T.fit(_tiny(tmp_path, epochs=1, run_name="r"), log=lambda m: None)
    with pytest.raises(ConfigError, match="only epochs"):
        T.fit(_tiny(tmp_path, epochs=1, run_name="r", lr=1e-3), resume=run, log=lambda m: None)


def test_nan_loss_stops_with_a_clear_message_and_keeps_last(tmp_path, monkeypatch):
    real = T.F.binary_cross_entropy_with_logits
    calls = {"n": 0}

    def nan_in_epoch_2(logits, target, *a, **kw):
        calls["n"] += 1
        out = real(logits, target, *a, **kw)
        return out * float("nan") if calls["n"] > 8 else out  # 512 / 64 = 8 batches per epoch

    monkeypatch.setattr(T.F, "binary_cross_entropy_with_logits", nan_in_epoch_2)
    cfg = _tiny(tmp_path, run_name="nan")
    with pytest.raises(T.TrainingDiverged, match="epoch 2"):
        T.fit(cfg, log=lambda m: None)
    last = torch.load(cfg.out_path / "nan" / "last.pt", weights_only=True)
    assert last["epoch"] == 1


@pytest.mark.slow
def test_smoke_run_on_real_mnist_learns(tmp_path):
    cfg = load_config(PARAMS_DIR / "smoke.yaml", out_dir=str(tmp_path / "runs"))
    hist = T.read_history(T.fit(cfg, log=print))
    assert hist[-1]["test_acc"] > 0.75, hist[-1]
    assert hist[-1]["test_auc"] > 0.85
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
