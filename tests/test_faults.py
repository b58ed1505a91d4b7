"""Faults during a run: a full disk while writing, a NaN or infinite value in training or in
evaluation, a SIGKILL in the middle of training, and a resume asking for a device that is not
there. After each, what is on disk is either the old state or a resumable one.

Runs are tiny (1 thread, 512 training pairs) and use a scratch data root whose MNIST/raw files
link to the real ones, so the project's own caches are never touched.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from mnist_pairs import paths
from mnist_pairs import train as T
from mnist_pairs.config import Config
from mnist_pairs.errors import TrainingDiverged
from mnist_pairs.metrics import pair_metrics
from mnist_pairs.mnist import MNIST_FILES
from mnist_pairs.paths import PROJECT_ROOT, atomic_write_bytes, atomic_write_text
from mnist_pairs.runs import Run, load_checkpoint

from conftest import QUIET, TINY

VAL_IMAGES, TEST_IMAGES = 100, 1000     # images behind the val and test pairs at subset_fraction 0.1


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory, mnist_root) -> Path:
    """A data root holding MNIST/raw links to the verified real files; caches are drawn here."""
    root = tmp_path_factory.mktemp("data")
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in MNIST_FILES:
        (root / "MNIST" / "raw" / name).symlink_to(mnist_root / "MNIST" / "raw" / name)
    return root


def tiny(tmp_path: Path, root: Path, run_name: str = "r", **kw) -> Config:
    return Config(**{**TINY, **kw}, data_root=str(root), out_dir=str(tmp_path / "runs"), run_name=run_name)


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, scratch_root) -> Path:
    """A finished one-epoch run of the tiny config; tests work on copies of it."""
    return T.fit(tiny(tmp_path_factory.mktemp("one"), scratch_root, run_name="one"), **QUIET).dir


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_pairs", *map(str, args)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=300, env=env)


def strip_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def differences(a, b, where: str = "") -> list[str]:
    """Where two checkpoint-like structures (dicts, lists, tensors, numbers) differ."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} keys"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} length"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


def spy_epoch(monkeypatch) -> dict:
    """Track the epoch fit() is in (train_one_epoch's 6th argument)."""
    now = {"epoch": 0}
    real = T.train_one_epoch

    def spied(*args, **kwargs):
        now["epoch"] = args[5]
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", spied)
    return now


# --------------------------------------------------------------------------- 9: disk full while writing

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _DiskFills:
    """A file whose write stores half the data, then fails as a full disk does."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        _enospc()

    def flush(self):
        self.f.flush()

    def fileno(self):
        return self.f.fileno()


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def _save_figure(path):
    from mnist_pairs.plots import save_figure

    return save_figure(_figure(), path)


WRITERS = {
    "atomic_write_bytes": lambda path: atomic_write_bytes(path, b"new" * 200_000),
    "atomic_write_text": lambda path: atomic_write_text(path, "新的内容\n" * 100_000),
    "save_figure": _save_figure,
}


@pytest.mark.parametrize("existing", [True, False], ids=["overwrite", "new-file"])
@pytest.mark.parametrize("fails_at", ["write", "fsync", "replace"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, writer, fails_at, existing):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "neighbour.txt").write_text("untouched")
    target = folder / ("figure.png" if writer == "save_figure" else "file.bin")
    old = b"old content \x00\xff" * 10
    if existing:
        target.write_bytes(old)
    if fails_at == "write":
        real_open = open
        monkeypatch.setattr(paths, "open", lambda *a, **k: _DiskFills(real_open(*a, **k)), raising=False)
    else:
        monkeypatch.setattr(os, fails_at, _enospc)
    with pytest.raises(OSError) as e:
        WRITERS[writer](target)
    assert e.value.errno == errno.ENOSPC                        # propagated as it was, not wrapped
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == sorted(["neighbour.txt"] + ([target.name] if existing else []))
    if existing:
        assert target.read_bytes() == old
    assert (folder / "neighbour.txt").read_text() == "untouched"
    WRITERS[writer](target)                                      # with space again, the write works
    assert sorted(p.name for p in folder.iterdir()) == sorted(["neighbour.txt", target.name])


# --------------------------------------------------------------------------- 10: non-finite logits in evaluation

@pytest.mark.parametrize("bad, pair_set", [(float("nan"), "val"), (float("inf"), "test")], ids=["nan-val", "inf-test"])
def test_non_finite_logit_in_evaluation_stops_before_the_scheduler_steps(tmp_path, scratch_root, monkeypatch,
                                                                         bad, pair_set):
    now = spy_epoch(monkeypatch)
    real_score_pairs = T.score_pairs
    n_images = {"val": VAL_IMAGES, "test": TEST_IMAGES}[pair_set]

    def poisoned(model, images, a, b, batch_size):            # the model's eval-mode output at epoch 2
        logits = real_score_pairs(model, images, a, b, batch_size)
        if now["epoch"] == 2 and len(images) == n_images:
            logits = logits.clone()
            logits[len(logits) // 2] = bad
        return logits

    monkeypatch.setattr(T, "score_pairs", poisoned)
    stepped = []
    sched_cls = torch.optim.lr_scheduler.ReduceLROnPlateau
    real_step = sched_cls.step

    def spied_step(self, metrics, *args, **kwargs):
        stepped.append(float(metrics))
        return real_step(self, metrics, *args, **kwargs)

    monkeypatch.setattr(sched_cls, "step", spied_step)
    cfg = tiny(tmp_path, scratch_root, epochs=3)
    with pytest.raises(TrainingDiverged) as e:
        T.fit(cfg, **QUIET)
    assert "evaluation gave 1 non-finite logits of 200" in str(e.value) and "last.pt keeps" in str(e.value)
    run_dir = cfg.out_path / "r"
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]
    assert stepped == [history[0]["val_loss"]] and all(math.isfinite(v) for v in stepped)
    last = load_checkpoint(run_dir / "last.pt")
    assert last["epoch"] == 1 and strip_time(last["history"]) == strip_time(history)
    assert last["scheduler"]["last_epoch"] == 1 and math.isfinite(last["scheduler"]["best"])
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 1
    assert not (run_dir / "results.json").exists() and not (run_dir / "scores.npz").exists()


# --------------------------------------------------------------------------- 11: NaN training loss

def test_nan_training_loss_stops_naming_the_epoch_and_keeps_the_previous_one(tmp_path, scratch_root,
                                                                               one_epoch_run, monkeypatch):
    now = spy_epoch(monkeypatch)
    real_loss = T.pair_loss

    def poisoned(logits, target, kind="bce_logits"):
        loss = real_loss(logits, target, kind)
        return loss * float("nan") if now["epoch"] >= 2 else loss

    monkeypatch.setattr(T, "pair_loss", poisoned)
    cfg = tiny(tmp_path, scratch_root, epochs=3)
    with pytest.raises(TrainingDiverged, match=r"training loss became nan at epoch 2, batch 0; last.pt keeps epoch 1"):
        T.fit(cfg, **QUIET)
    run_dir = cfg.out_path / "r"
    last = load_checkpoint(run_dir / "last.pt")
    reference = Run(one_epoch_run)                               # the same config stopped after epoch 1
    assert last["epoch"] == 1
    assert all(torch.equal(last["model"][k], v) for k, v in reference.checkpoint("last")["model"].items())
    assert strip_time(json.loads((run_dir / "history.json").read_text())) == strip_time(reference.records)
    assert not (run_dir / "results.json").exists()
    # evaluation never goes through the training loss: with it poisoned, the metrics are untouched
    logits, target = torch.tensor([2.0, -1.0, 0.5, -3.0, 0.0]), torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    assert math.isnan(T.pair_loss(logits, target).item())
    m = pair_metrics(logits, target)
    assert m["loss"] == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item(), rel=1e-6)
    assert m["acc"] == pytest.approx(2 / 5) and math.isfinite(m["auc"])


# --------------------------------------------------------------------------- 12: env.json across resumes

def test_resume_keeps_env_json_and_appends_a_record_per_resume(tmp_path, one_epoch_run):
    run_dir = Path(shutil.copytree(one_epoch_run, tmp_path / "run"))
    original = json.loads((run_dir / "env.json").read_text())
    assert "resumes" not in original and original["torch"] == torch.__version__
    T.fit(resume=run_dir, overrides={"epochs": 2}, **QUIET)
    T.fit(resume=run_dir, overrides={"epochs": 3}, **QUIET)
    env = json.loads((run_dir / "env.json").read_text())
    assert {k: v for k, v in env.items() if k != "resumes"} == original
    assert [r["from_epoch"] for r in env["resumes"]] == [1, 2]
    for r in env["resumes"]:
        datetime.fromisoformat(r["at"])
        assert r["torch"] == torch.__version__ and r["precision"] == original["precision"] and "git_commit" in r
    assert [h["epoch"] for h in Run(run_dir).records] == [1, 2, 3]


# --------------------------------------------------------------------------- 13: SIGKILL, then resume

KILL = dict(TINY, epochs=5, lr=3e-3, lr_patience=0)


def _epochs_done(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "history.json").read_text()))
    except (FileNotFoundError, ValueError):
        return 0


def _kill_after_first_epoch(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 300
    while _epochs_done(run_dir) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, scratch_root):
    out = tmp_path / "killed"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**KILL, "data_root": str(scratch_root), "out_dir": str(out), "run_name": "k"}))
    run_dir = out / "k"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mnist_pairs", "train", "--params", str(params)],
                                cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        killer = threading.Thread(target=_kill_after_first_epoch, args=(proc, run_dir))
        killer.start()
        try:   # meanwhile, the uninterrupted run of the same config, here
            full = T.fit(Config(**KILL, data_root=str(scratch_root), out_dir=str(tmp_path / "full"), run_name="full"),
                         **QUIET)
        finally:
            killer.join()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    history = full.records
    cut = next((h["epoch"] for h in history if h["lr"] < history[0]["lr"]), None)
    assert cut is not None, "the config must reduce the LR for this test to cover it"
    best, improved = -1.0, []
    for h in history:
        if h["val_acc"] > best:
            best, improved = h["val_acc"], improved + [h["epoch"]]
    assert len(improved) >= 2, "the best checkpoint must change at least twice for this test to cover it"
    killed_at = load_checkpoint(run_dir / "last.pt")["epoch"]
    assert 1 <= killed_at < KILL["epochs"] and not (run_dir / "results.json").exists()
    # what the resumed part must reproduce: an LR cut decided after the kill, and a new best
    assert cut - 1 > killed_at, (cut, killed_at)
    assert any(e > killed_at for e in improved), (improved, killed_at)

    resumed = cli("train", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming k at epoch {killed_at + 1}/{KILL['epochs']}" in resumed.stdout
    assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    run = Run(run_dir)
    assert strip_time(run.records) == strip_time(history)
    for which in ("best", "last"):
        a, b = full.checkpoint(which), run.checkpoint(which)
        assert a["model"].keys() == b["model"].keys(), which
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), which
        # and everything else they hold: epoch, metrics, best score, optimizer, scheduler, RNG
        a["history"], b["history"] = strip_time(a.get("history", [])), strip_time(b.get("history", []))
        assert differences(a, b) == [], which
    assert run.results["selected_epoch"] == full.results["selected_epoch"] == improved[-1]
    assert all((run.scores()[k] == v).all() for k, v in full.scores().items())
    assert [r["from_epoch"] for r in run.env["resumes"]] == [killed_at]


def test_resume_keeps_the_best_score_of_the_epochs_before(tmp_path, one_epoch_run, monkeypatch):
    """The SIGKILL test cannot see a resume that forgets the best score when the next epoch
    improves anyway; here the resumed epoch is worse than epoch 1, so best.pt must stay."""
    run_dir = Path(shutil.copytree(one_epoch_run, tmp_path / "run"))
    best_before = (run_dir / "best.pt").read_bytes()
    epoch1 = Run(run_dir).records[0]
    real_evaluate = T.evaluate

    def worse(*args, **kwargs):
        ev = real_evaluate(*args, **kwargs)
        return {**ev, "val_acc": 0.0}

    monkeypatch.setattr(T, "evaluate", worse)
    run = T.fit(resume=run_dir, overrides={"epochs": 2}, **QUIET)
    assert [h["val_acc"] for h in run.records] == [epoch1["val_acc"], 0.0]
    assert (run_dir / "best.pt").read_bytes() == best_before
    assert run.checkpoint("last")["best_score"] == epoch1["val_acc"] and run.results["selected_epoch"] == 1


# --------------------------------------------------------------------------- 14: a device that is not there

def test_resume_on_cuda_without_cuda_fails_cleanly(tmp_path, one_epoch_run):
    run_dir = Path(shutil.copytree(one_epoch_run, tmp_path / "run"))
    before = contents(run_dir)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}           # no CUDA, even on a GPU machine
    proc = cli("train", "--resume", run_dir, "--set", "device=cuda", env=env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "CUDA is not available" in lines[0] and "device=cpu" in lines[0], lines[0]
    assert contents(run_dir) == before                          # no resume record, no new file
