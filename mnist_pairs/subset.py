"""The fixed subset of a dataset and the keyed random generators every draw of the project uses.

    subset = load_subset(cfg)        # 6,000 / 1,000 images, indices cached under <data>/subsets/ with a checksum

Randomness comes only from explicit generators keyed by integers (`keyed_generator`), drawn on
the CPU, one key per purpose, so that no two draws share a stream.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .mnist import ensure_mnist, load_mnist
from .paths import atomic_write_text

# Generator keys: one per purpose, so that no two draws share a stream.
_SUBSET_KEY, _TEST_PAIRS_KEY, _TRAIN_PAIRS_KEY, AUG_KEY = 1, 2, 3, 4
_VAL_SPLIT_KEY, _VAL_PAIRS_KEY, _HELDOUT_KEY, _CONFIRM_KEY = 6, 7, 8, 9


def keyed_generator(*key: int) -> torch.Generator:
    """A CPU generator keyed by integers (seed, purpose, epoch…), well mixed by SeedSequence."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def digest(a: np.ndarray | torch.Tensor) -> str:
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.int64))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def read_cache(path: Path, log) -> dict | None:
    """A cache file's JSON, or None (and a message) when it is missing, truncated or corrupt."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as e:
        log(f"cache {path} is damaged ({type(e).__name__}); drawing it again (it is derived data)")
        return None


# --------------------------------------------------------------------------- fixed subset

@dataclass
class Subset:
    """The fixed subset as float images in [0, 1], shape (N,1,28,28), and int64 labels, plus
    the MNIST test images outside it (the held-out images nothing is chosen on) and, when asked
    for, the MNIST training images outside it (the confirmation images, confirmation.py)."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_index: np.ndarray
    test_index: np.ndarray
    heldout_images: torch.Tensor
    heldout_labels: torch.Tensor
    n_train_source: int  # size of the MNIST split the subset was drawn from
    n_test_source: int
    confirm_images: torch.Tensor | None = None
    confirm_labels: torch.Tensor | None = None

    @property
    def index_sha256(self) -> dict[str, str]:
        return {"train": digest(self.train_index), "test": digest(self.test_index)}


def _draw_subset(n_train: int, n_test: int, fraction: float, seed: int) -> dict[str, np.ndarray]:
    g = keyed_generator(seed, _SUBSET_KEY)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        k = int(round(n * fraction))
        out[split] = torch.randperm(n, generator=g)[:k].sort().values.numpy()
    return out


def _check_digits(idx: dict[str, np.ndarray], labels: dict[str, torch.Tensor], fraction: float) -> None:
    for split in ("train", "test"):
        counts = torch.bincount(labels[split][torch.from_numpy(idx[split])], minlength=10)
        if int(counts.min()) < 2:
            raise ConfigError(f"subset_fraction {fraction:g} gives a {split} subset with {counts.tolist()} images "
                              "per digit; every digit needs at least 2 (for same-digit pairs): use a larger fraction")


def subset_indices(labels: dict[str, torch.Tensor], fraction: float, seed: int, root: Path,
                   log=print, prefix: str = "") -> dict[str, np.ndarray]:
    """Indices of the fixed subset, drawn once and cached in <root>/subsets/ with a checksum."""
    n_train, n_test = len(labels["train"]), len(labels["test"])
    path = root / "subsets" / f"{prefix}subset_seed{seed}_frac{fraction:g}.json"
    saved = read_cache(path, log)
    if saved is not None:
        try:
            idx = {k: np.asarray(saved[k], dtype=np.int64) for k in ("train", "test")}
            if all(digest(idx[k]) == saved[f"{k}_sha256"] for k in idx) and \
                    (saved["n_train"], saved["n_test"]) == (n_train, n_test):
                return idx
        except (KeyError, TypeError, ValueError):
            pass
        log(f"subset cache {path} fails its checksum; drawing it again from data seed {seed}")
    idx = _draw_subset(n_train, n_test, fraction, seed)
    _check_digits(idx, labels, fraction)  # before anything is written
    record = {"seed": seed, "fraction": fraction, "n_train": n_train, "n_test": n_test}
    for k, v in idx.items():
        record[k] = v.tolist()
        record[f"{k}_sha256"] = digest(v)
    atomic_write_text(path, json.dumps(record))
    return idx


def cache_prefix(cfg) -> str:
    """Cache file names of MNIST carry no prefix (as before Fashion-MNIST); others, the dataset."""
    return "" if cfg.dataset == "mnist" else f"{cfg.dataset}_"


def load_subset(cfg, log=print) -> Subset:
    """The config's subset (dataset, data seed, fraction, data root), from verified files; the
    training images outside it only when the config scores confirmation pairs."""
    root = cfg.data_path
    ensure_mnist(root, dataset=cfg.dataset)  # once for both splits
    tr_x, tr_y = load_mnist(root, train=True, verify=False, dataset=cfg.dataset)
    te_x, te_y = load_mnist(root, train=False, verify=False, dataset=cfg.dataset)
    idx = subset_indices({"train": tr_y, "test": te_y}, cfg.subset_fraction, cfg.data_seed, root, log,
                         prefix=cache_prefix(cfg))
    outside = np.setdiff1d(np.arange(len(te_y)), idx["test"])

    def as_float(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0).unsqueeze(1).contiguous()

    sub = Subset(as_float(tr_x[idx["train"]]), tr_y[idx["train"]].clone(),
                 as_float(te_x[idx["test"]]), te_y[idx["test"]].clone(), idx["train"], idx["test"],
                 as_float(te_x[outside]), te_y[outside].clone(), len(tr_y), len(te_y))
    if getattr(cfg, "confirm_pairs", 0):
        rest = np.setdiff1d(np.arange(len(tr_y)), idx["train"])
        sub.confirm_images, sub.confirm_labels = as_float(tr_x[rest]), tr_y[rest].clone()
    return sub
