"""Run folders: create, find, load; checkpoints; what a finished run holds.

A run folder `experiments/<name>/` holds
- config.yaml (with the device and precision actually used), env.json (environment facts,
  plus a record per resume), history.json (one record per epoch);
- best.pt (the checkpoint selected on the run's selection pairs), last.pt (everything needed
  to resume: model, optimizer, scheduler, scaler, epoch, RNG state);
- scores.npz (logits of the selected and final models on every pair set, computed once at
  the end) and results.json (the run's numbers, from those scores);
- digests.json: the sha256 of best.pt and last.pt as the finished run wrote them (published runs and
  ONNX exports record theirs too). Every load checks it: a damaged or edited file is refused by
  name, with the digest it should have, instead of silently being another model.

    run = Run.open("experiments/siamese_20261127_101500")
    run.history          # DataFrame indexed by epoch
    run.model()          # the selected model, eval mode
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .config import Config, load_config
from .errors import CheckpointError, ConfigError, DigestMismatch, RunNotFound
from .models import build_model
from .paths import EXPERIMENTS_DIR, atomic_write_bytes, atomic_write_text, resolve, utc_now

LATEST_POINTER = "latest_run.txt"  # under cfg.out_dir: the last run fit() finished
RESUME_MAY_CHANGE = ("epochs", "device", "precision", "num_threads", "eval_batch_size", "fused_blocks")


def new_run_dir(cfg: Config) -> Path:
    name = cfg.run_name or f"{cfg.model}_{datetime.now():%Y%m%d_%H%M%S}"
    run_dir = cfg.out_path / name
    if run_dir.exists() and cfg.run_name:
        raise ConfigError(f"run folder {run_dir} exists: resume it (--resume {run_dir}) or choose another run_name")
    k = 1
    while run_dir.exists():  # two runs started in the same second
        run_dir, k = cfg.out_path / f"{name}_{k}", k + 1
    run_dir.mkdir(parents=True)
    return run_dir


DIGESTS = "digests.json"  # {file name: sha256} of the files a user loads from the folder it sits in
RUN_WEIGHTS = ("best.pt", "last.pt")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_digests(folder: str | os.PathLike, names) -> dict[str, str]:
    """Write folder/digests.json with the sha256 of each of `names` that exists there."""
    folder = Path(folder)
    digests = {n: sha256((folder / n).read_bytes()) for n in names if (folder / n).is_file()}
    atomic_write_text(folder / DIGESTS, json.dumps(digests, indent=1) + "\n")
    return digests


def verified_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, checked against the sha256 its folder's digests.json records (if any)."""
    path = Path(path)
    data = path.read_bytes()
    record = path.parent / DIGESTS
    if record.is_file():
        try:
            expected = json.loads(record.read_text()).get(path.name)
        except ValueError:
            raise DigestMismatch(f"{record} is not valid JSON: restore it with git (`git checkout -- {record}`) "
                                 "or rebuild the folder (`make study`)") from None
        found = sha256(data)
        if expected and found != expected:
            raise DigestMismatch(
                f"{path} is not the file its folder recorded: sha256 expected {expected}, found {found} (damaged, "
                f"edited or half-copied). Restore it with git (`git checkout -- {path}`) or rebuild it "
                "(`make study` for the published runs, `python -m mnist_pairs export` for an ONNX export)")
    return data


def save_checkpoint(obj: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint, or a CheckpointError that names the file and says what to do."""
    if not path.is_file():
        raise RunNotFound(f"{path} does not exist")
    data = verified_bytes(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        what = ("start the run again, or resume from a copy of last.pt" if path.name == "last.pt" else
                "train the run again (`python -m mnist_pairs train --params <run>/config.yaml --set run_name=…`); "
                "its last.pt still holds the final epoch's weights (Run.model('last'))")
        raise CheckpointError(f"{path} cannot be read: truncated or corrupt ({type(e).__name__}: "
                              f"{str(e).strip()[:200]}). To fix it, {what}.") from None


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False))


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunNotFound(f"{path} does not exist") from None
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None


@dataclass
class Run:
    """A run folder, opened read-only: its config, history, models, scores and results."""
    dir: Path

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Run":
        d = resolve(path)
        if not (d / "config.yaml").is_file():
            raise RunNotFound(f"{d} is not a run folder (no config.yaml)")
        return cls(d)

    @classmethod
    def latest(cls, out_dir: str | os.PathLike = EXPERIMENTS_DIR) -> "Run":
        """The run fit() finished last under out_dir, else the newest finished one."""
        root = resolve(out_dir)
        pointer = root / LATEST_POINTER
        if pointer.is_file():
            d = Path(pointer.read_text().strip())
            if (d / "results.json").is_file():
                return cls(d)
        done = [p.parent for p in root.glob("*/results.json")]
        if not done:
            raise RunNotFound(f"no finished run under {root}: train one first (02_train.ipynb)")
        return cls(max(done, key=lambda p: p.stat().st_mtime))

    @cached_property
    def cfg(self) -> Config:
        return load_config(self.dir / "config.yaml")

    @property
    def records(self) -> list[dict]:
        return read_json(self.dir / "history.json")

    @property
    def history(self):
        import pandas as pd

        return pd.DataFrame(self.records).set_index("epoch")

    @property
    def env(self) -> dict:
        return read_json(self.dir / "env.json")

    @property
    def results(self) -> dict:
        return read_json(self.dir / "results.json")

    def digests(self) -> dict[str, str]:
        """{file name: sha256} the run recorded for its weights (digests.json); {} where it recorded none."""
        path = self.dir / DIGESTS
        return read_json(path) if path.is_file() else {}

    @property
    def finished(self) -> bool:
        return (self.dir / "results.json").is_file()

    def checkpoint(self, which: str = "best") -> dict:
        return load_checkpoint(self.dir / f"{which}.pt")

    def model(self, which: str = "best", device: str | torch.device = "cpu") -> torch.nn.Module:
        """The model with the checkpoint's weights, in eval mode."""
        ckpt = self.checkpoint(which)
        weights = ckpt["model"]
        if ckpt.get("ema"):  # last.pt of a run with a weight EMA (optim.py): the averaged weights were scored
            weights = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
        model = build_model(self.cfg.model)
        model.load_state_dict(weights)
        return model.to(device).eval()

    def scores(self) -> dict[str, np.ndarray]:
        """{"<model>_<pair set>": logits}, e.g. "best_test", "final_heldout"."""
        path = self.dir / "scores.npz"
        if not path.is_file():
            raise RunNotFound(f"{path} does not exist: the run has not finished")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def __repr__(self) -> str:
        return f"Run({self.dir})"


# --------------------------------------------------------------------------- for fit (train.py)

def prepare_run(cfg: Config | None, resume, overrides: dict | None):
    """For fit: (config, run folder or None, last.pt state or None), all checked before anything
    is written. Resuming, only RESUME_MAY_CHANGE keys may differ from the run's config.yaml."""
    if resume is None:
        if cfg is None:
            raise ConfigError("fit needs a config or a run folder to resume")
        return cfg, None, None
    run_dir = resolve(resume)
    if not (run_dir / "config.yaml").is_file():
        raise RunNotFound(f"cannot resume {run_dir}: no such run folder (no config.yaml)")
    saved = Run(run_dir).cfg
    changes = dict(overrides or {})
    if cfg is not None:
        changes.update({k: v for k, v in cfg.to_dict().items() if v != getattr(saved, k)})
    bad = sorted(set(changes) - set(RESUME_MAY_CHANGE))
    if bad:
        raise ConfigError(f"resume: {bad} differ from {run_dir / 'config.yaml'}; only {list(RESUME_MAY_CHANGE)} may change")
    if not (run_dir / "last.pt").is_file():
        raise RunNotFound(f"cannot resume {run_dir}: it has no last.pt (it died before its first epoch ended); "
                          "start a new run instead")
    state = load_checkpoint(run_dir / "last.pt")
    if (run_dir / "best.pt").is_file():
        load_checkpoint(run_dir / "best.pt")  # a damaged best.pt is reported now, before anything is written
    for tmp in run_dir.glob(".*.tmp*"):       # left by a write that a kill interrupted
        tmp.unlink(missing_ok=True)
    return saved.replace(**changes), run_dir, state


def check_numeric_path(state: dict, now: dict, run_dir: Path, anyway: bool) -> dict:
    """Resuming: the numeric path last.pt was written under (hardware.numeric_path) against this
    process's. Returns what differs ({key: [then, now]}); a difference is refused unless `anyway`
    (the resume record in env.json then keeps it). last.pt files from before the record: {}."""
    then = state.get("numeric_path")
    if not then:
        return {}
    changed = {k: [then.get(k), v] for k, v in now.items() if then.get(k) != v}
    if changed and not anyway:
        what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        fix = (f" Run it with {then['threads']} threads (OMP_NUM_THREADS={then['threads']} or --set "
               f"num_threads={then['threads']})," if "threads" in changed else "")
        raise ConfigError(f"resume: {run_dir / 'last.pt'} was written under another numeric path ({what}); "
                          f"the resumed run would not equal an uninterrupted one.{fix} resume it on the same "
                          "kind of CPU, or pass --resume-anyway (fit(resume_anyway=True)) to continue and "
                          "record the change in env.json")
    return changed


def open_run_dir(cfg: Config, run_dir, state, subset_sha256: dict, env: dict):
    """Create the run folder (or record a resume in env.json), and write config.yaml."""
    if run_dir is None:
        run_dir = new_run_dir(cfg)
        env.update(model=cfg.model, subset_index_sha256=subset_sha256,
                   started=utc_now())
        write_json(run_dir / "env.json", env)
    else:
        (run_dir / DIGESTS).unlink(missing_ok=True)   # its weights change from here on; finish records them
        original = Run(run_dir).env
        original.setdefault("resumes", []).append({"at": utc_now(),
                                                   "from_epoch": state["epoch"], **env})
        write_json(run_dir / "env.json", original)
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    return run_dir
