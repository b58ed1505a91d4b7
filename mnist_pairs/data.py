"""Balanced pairs, and the pair sets a run is evaluated on (the fixed subset: subset.py).

    a, b, y = train_pairs(labels, 12000, seed=42, epoch=3)
    data = load_data(cfg)                        # training images + the "val"/"test"/"heldout" pair sets
                                                 # (+ "confirm" with confirm_pairs > 0)

Randomness comes only from explicit generators keyed by integers, drawn on the CPU, so results
depend neither on a global RNG, the device nor any worker count. The data seed keys the
subset and every fixed pair set; the training seed keys each epoch's pairs (and, in
augment.py, the augmentation). Fixed pair sets are derived data: cached under
<data>/subsets/ with a checksum, and drawn again when a cache is missing or damaged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .paths import atomic_write_text
from .subset import (_CONFIRM_KEY, _HELDOUT_KEY, _TEST_PAIRS_KEY, _TRAIN_PAIRS_KEY, _VAL_PAIRS_KEY, _VAL_SPLIT_KEY,
                     Subset, cache_prefix, digest, keyed_generator, load_subset, read_cache)

# --------------------------------------------------------------------------- pairs

def sample_pairs(labels: torch.Tensor, n_pairs: int, generator: torch.Generator):
    """Balanced pairs: exactly n/2 same-digit and n/2 different-digit, in random order.

    Vectorised: each pair picks an anchor uniformly, then a partner uniformly among the
    other images of its class (never itself) or among the images of the other classes.
    Returns (idx_a, idx_b, target) with target 1.0 for same digit, 0.0 otherwise.
    """
    if n_pairs % 2:
        raise ValueError(f"n_pairs must be even, got {n_pairs}")
    labels = labels.cpu().long()
    n = labels.numel()
    order = torch.argsort(labels, stable=True)              # image indices grouped by class
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
    offsets = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n) - offsets[labels[order]]   # position of each image in its class
    if (counts[counts > 0] < 2).any() or (counts > 0).sum() < 2:
        raise ValueError("pairs need at least two classes and two images per present class")

    half = n_pairs // 2
    a = torch.randint(n, (n_pairs,), generator=generator)
    u = torch.rand(n_pairs, generator=generator, dtype=torch.float64)
    c = labels[a]
    # same digit: one of the n_c - 1 other images of class c
    r_same = (u[:half] * (counts[c[:half]] - 1)).long()
    r_same = r_same + (r_same >= rank[a[:half]]).long()
    b_same = order[offsets[c[:half]] + r_same]
    # different digit: one of the n - n_c images outside class c
    r_diff = (u[half:] * (n - counts[c[half:]])).long()
    r_diff = r_diff + (r_diff >= offsets[c[half:]]).long() * counts[c[half:]]
    b_diff = order[r_diff]

    b = torch.cat([b_same, b_diff])
    target = torch.cat([torch.ones(half), torch.zeros(half)])
    perm = torch.randperm(n_pairs, generator=generator)
    return a[perm], b[perm], target[perm]


def train_pairs(labels: torch.Tensor, n_pairs: int, seed: int, epoch: int, sampling: str = "balanced"):
    """The training pairs of one epoch: a pure function of (labels, n_pairs, seed, epoch).
    sampling "random" (the seed's first version): two distinct images drawn uniformly, so
    only about one pair in ten shows the same digit."""
    g = keyed_generator(seed, _TRAIN_PAIRS_KEY, epoch)
    if sampling == "balanced":
        return sample_pairs(labels, n_pairs, g)
    n = len(labels)
    a = torch.randint(n, (n_pairs,), generator=g)
    b = torch.randint(n - 1, (n_pairs,), generator=g)
    b = b + (b >= a).long()                                   # never the image itself
    return a, b, (labels[a] == labels[b]).float()


def fixed_pairs(labels: torch.Tensor, n_pairs: int, key: tuple[int, ...], path: Path, log=print):
    """Balanced pairs drawn once from `key` and saved at `path` with a checksum; a missing,
    damaged or mismatched cache is drawn again (the same key gives the same pairs)."""
    saved = read_cache(path, log)
    if saved is not None:
        try:
            arr = np.asarray(saved["pairs"], dtype=np.int64)
            if digest(arr) == saved["sha256"] and arr.shape == (3, n_pairs) and \
                    saved["labels_sha256"] == digest(labels):
                t = torch.from_numpy(arr)
                return t[0], t[1], t[2].float()
        except (KeyError, TypeError, ValueError):
            pass
        log(f"pair cache {path} fails its checksum or was drawn for other images; drawing it again")
    a, b, y = sample_pairs(labels, n_pairs, keyed_generator(*key))
    arr = torch.stack([a, b, y.long()]).numpy()
    atomic_write_text(path, json.dumps({"key": list(key), "n_pairs": n_pairs, "sha256": digest(arr),
                                        "labels_sha256": digest(labels), "pairs": arr.tolist()}))
    return a, b, y


def stratified_split(labels: torch.Tensor, n_held: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held-out) indices: n_held images held out in proportion to each digit's count
    (largest remainder), drawn from the data seed; the two sets are disjoint."""
    labels = labels.cpu().long()
    perm = torch.randperm(len(labels), generator=keyed_generator(seed, _VAL_SPLIT_KEY))
    counts = torch.bincount(labels, minlength=10).double()
    exact = counts * n_held / len(labels)
    quota = exact.floor().long()
    rest = n_held - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:rest]] += 1
    grouped = perm[torch.argsort(labels[perm], stable=True)]  # random order within each digit
    starts = torch.cumsum(counts.long(), 0) - counts.long()
    held = torch.cat([grouped[s:s + q] for s, q in zip(starts.tolist(), quota.tolist())])
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[held] = True
    return torch.nonzero(~mask).squeeze(1), held.sort().values


def pair_balance(target: torch.Tensor) -> dict[str, int]:
    t = target.long()
    return {"pairs": int(t.numel()), "same": int(t.sum()), "different": int((1 - t).sum())}


# --------------------------------------------------------------------------- a run's data

@dataclass
class PairSet:
    """Fixed pairs (a[i], b[i]) among `images` (N,1,28,28) in [0, 1], with targets y."""
    images: torch.Tensor
    labels: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    y: torch.Tensor


@dataclass
class RunData:
    """What one run trains on and is scored on, on the CPU.

    protocol "test": train on all subset training images; select on the test pairs.
    protocol "validation": hold out `val_images` training images (stratified, data seed) and
    select on pairs among them; the test pairs are only scored, never chosen on.
    "heldout" pairs come from the MNIST test images outside the subset.
    train_classes: the training and validation images keep only those classes; the test and
    held-out pairs keep all ten (openset.py scores them by pair type).
    """
    subset: Subset
    train_images: torch.Tensor
    train_labels: torch.Tensor
    sets: dict[str, PairSet] = field(default_factory=dict)
    selection: str = "test"  # the pair set the LR schedule, best epoch and threshold use
    source: dict = field(default_factory=dict)  # data_source(cfg) of the config it was loaded for


# The config keys load_data reads: two configs that agree on them load the same RunData.
DATA_KEYS = ("dataset", "data_root", "data_seed", "subset_fraction", "train_classes", "protocol", "val_images",
             "val_pairs", "test_pairs", "heldout_pairs", "confirm_pairs")


def data_source(cfg) -> dict:
    return {k: getattr(cfg, k) for k in DATA_KEYS}


def seen_mask(labels: torch.Tensor, classes) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))


def load_data(cfg, log=print) -> RunData:
    s = load_subset(cfg, log)
    cache, frac, ds = cfg.data_path / "subsets", f"{cfg.subset_fraction:g}", cfg.data_seed
    stem = f"{cache_prefix(cfg)}{{}}_seed{ds}_frac{frac}"   # cache names: MNIST's as before
    ta, tb, ty = fixed_pairs(s.test_labels, cfg.test_pairs, (ds, _TEST_PAIRS_KEY),
                             cache / f"{stem.format('test_pairs')}_n{cfg.test_pairs}.json", log)
    data = RunData(s, s.train_images, s.train_labels, {"test": PairSet(s.test_images, s.test_labels, ta, tb, ty)},
                   source=data_source(cfg))
    if cfg.protocol == "validation":
        keep, held = stratified_split(s.train_labels, cfg.val_images, ds)
        classes, tag = cfg.seen_classes, ""
        if len(classes) < 10:  # open set: train and select on the seen classes only
            keep, held = keep[seen_mask(s.train_labels[keep], classes)], held[seen_mask(s.train_labels[held], classes)]
            tag = "_classes" + "".join(map(str, classes))
        vx, vy = s.train_images[held], s.train_labels[held]
        va, vb, vt = fixed_pairs(vy, cfg.val_pairs, (ds, _VAL_PAIRS_KEY),
                                 cache / f"{stem.format('val_pairs')}_v{cfg.val_images}{tag}_n{cfg.val_pairs}.json", log)
        data.train_images, data.train_labels = s.train_images[keep], s.train_labels[keep]
        data.sets = {"val": PairSet(vx, vy, va, vb, vt), **data.sets}
        data.selection = "val"
    if cfg.heldout_pairs:
        ha, hb, hy = fixed_pairs(s.heldout_labels, cfg.heldout_pairs, (ds, _HELDOUT_KEY),
                                 cache / f"{stem.format('heldout_pairs')}_n{cfg.heldout_pairs}.json", log)
        data.sets["heldout"] = PairSet(s.heldout_images, s.heldout_labels, ha, hb, hy)
    if cfg.confirm_pairs:
        ca, cb, cy = fixed_pairs(s.confirm_labels, cfg.confirm_pairs, (ds, _CONFIRM_KEY),
                                 cache / f"{stem.format('confirm_pairs')}_n{cfg.confirm_pairs}.json", log)
        data.sets["confirm"] = PairSet(s.confirm_images, s.confirm_labels, ca, cb, cy)
    return data
