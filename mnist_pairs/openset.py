"""Open-set verification and one-shot classification, scored on the held-out images.

    out = evaluate(model, heldout_images, heldout_labels, cfg, device, precision, threshold)
    out["pair_types"]   # accuracy per pair type: seen–seen same/different, 8–8, 9–9, 8–9, unseen–seen
    out["auc"]          # ROC-AUC on the seen–seen pairs and on the pairs that involve an unseen class
    out["oneshot"]      # one-shot N-way accuracy for seen and unseen query classes

Everything is drawn once from the data seed, from the MNIST test images outside the subset
(nothing is chosen on them), so every run of a data seed meets the same pairs and episodes.
A model trained on all ten classes gets only the one-shot task (every class is "seen").

One-shot N-way: an episode draws one reference image per class; each query image is
classified as the class of the reference it scores highest with. The encoder runs once per
image; only the small head runs per (query, reference) pair.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from . import augment
from . import hardware
from .data import sample_pairs, seen_mask
from .subset import keyed_generator
from .errors import TrainingDiverged
from .metrics import accuracy_at
from .models import score_pairs

_OPENSET_KEY, _ONESHOT_KEY = 9, 10
SET_PAIRS = 4000           # balanced seen–seen pairs; as many unseen–unseen; half as many unseen–seen
EPISODES, QUERIES = 500, 40


def openset_pairs(labels: torch.Tensor, seen, n: int, seed: int):
    """(a, b, y, type) over `labels`: n balanced seen–seen pairs, n balanced unseen–unseen
    pairs and n/2 unseen–seen pairs (all different); `type` names each pair's kind."""
    g = keyed_generator(seed, _OPENSET_KEY)
    is_seen = seen_mask(labels, seen)
    S, U = torch.nonzero(is_seen).squeeze(1), torch.nonzero(~is_seen).squeeze(1)
    a1, b1, y1 = sample_pairs(labels[S], n, g)
    a2, b2, y2 = sample_pairs(labels[U], n, g)
    a3 = U[torch.randint(len(U), (n // 2,), generator=g)]
    b3 = S[torch.randint(len(S), (n // 2,), generator=g)]
    a, b = torch.cat([S[a1], U[a2], a3]), torch.cat([S[b1], U[b2], b3])
    y = torch.cat([y1, y2, torch.zeros(n // 2)])
    kinds = []
    for i, (ca, cb) in enumerate(zip(labels[a].tolist(), labels[b].tolist())):
        if i < n:
            kinds.append("seen–seen same" if ca == cb else "seen–seen different")
        elif i < 2 * n:
            kinds.append(f"{ca}–{ca}" if ca == cb else "unseen–unseen different")
        else:
            kinds.append("unseen–seen")
    return a, b, y, np.array(kinds)


def oneshot_episodes(labels: torch.Tensor, n_classes: int, episodes: int, queries: int, seed: int):
    """(references (E, C), queries (E, Q)) image indices: one reference per class per episode;
    queries drawn uniformly from the images that are not the episode's references."""
    g = keyed_generator(seed, _ONESHOT_KEY)
    by_class = [torch.nonzero(labels == c).squeeze(1) for c in range(n_classes)]
    refs = torch.stack([idx[torch.randint(len(idx), (episodes,), generator=g)] for idx in by_class], dim=1)
    qs = torch.randint(len(labels), (episodes, queries), generator=g)
    for _ in range(100):   # redraw the rare query that is one of its episode's references
        clash = (qs[:, :, None] == refs[:, None, :]).any(-1)
        if not clash.any():
            break
        qs[clash] = torch.randint(len(labels), (int(clash.sum()),), generator=g)
    return refs, qs


def _logits(model, images, a, b, batch: int, device, precision) -> np.ndarray:
    model.eval()
    with torch.no_grad(), hardware.autocast(device, precision):
        z = score_pairs(model, images, a, b, batch).float().cpu().numpy()
    if not np.isfinite(z).all():
        raise TrainingDiverged(f"open-set scoring gave {int((~np.isfinite(z)).sum())} non-finite logits of {len(z)}")
    return z


def oneshot(model, images, labels, seen, cfg, device, precision) -> dict:
    refs, qs = oneshot_episodes(labels, 10, EPISODES, QUERIES, cfg.data_seed)
    e, q, c = refs.shape[0], qs.shape[1], refs.shape[1]
    a = qs[:, :, None].expand(e, q, c).reshape(-1)
    b = refs[:, None, :].expand(e, q, c).reshape(-1)
    z = _logits(model, images, a, b, cfg.eval_batch_size, device, precision).reshape(e, q, c)
    truth = labels[qs].numpy()
    correct = z.argmax(-1) == truth
    is_seen = np.isin(truth, seen)
    out = {"episodes": e, "queries_per_episode": q, "ways": c, "acc": float(correct.mean()),
           "per_class": {str(k): float(correct[truth == k].mean()) for k in range(c)}}
    if is_seen.all():
        return out
    return {**out, "acc_seen": float(correct[is_seen].mean()), "acc_unseen": float(correct[~is_seen].mean())}


def evaluate(model, images: torch.Tensor, labels: torch.Tensor, cfg, device, precision: str,
             threshold: float) -> dict:
    """Open-set pair types (when cfg.train_classes leaves classes out) and one-shot 10-way,
    for `model` on the held-out `images` (N,1,28,28) in [0, 1] with their labels."""
    seen = list(cfg.seen_classes)
    x = augment.normalize(images).to(device).contiguous(memory_format=hardware.memory_format(cfg))
    out = {"seen_classes": seen, "oneshot": oneshot(model, x, labels, seen, cfg, device, precision)}
    if len(seen) == 10:
        return out
    a, b, y, kinds = openset_pairs(labels, seen, SET_PAIRS, cfg.data_seed)
    z, yn = _logits(model, x, a, b, cfg.eval_batch_size, device, precision), y.numpy()
    out["pair_types"] = {k: {"pairs": int((kinds == k).sum()), "acc": float(((z[kinds == k] > 0) == yn[kinds == k]).mean()),
                             "acc_at_threshold": accuracy_at(z[kinds == k], yn[kinds == k], threshold)}
                         for k in dict.fromkeys(kinds.tolist())}
    involves_unseen = ~np.char.startswith(kinds.astype(str), "seen")
    out["auc"] = {"seen–seen": float(roc_auc_score(yn[~involves_unseen], z[~involves_unseen])),
                  "with unseen": float(roc_auc_score(yn[involves_unseen], z[involves_unseen]))}
    out["threshold"] = threshold
    return out
