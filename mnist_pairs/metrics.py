"""Pair-classification metrics from logits and targets, all returned as plain values.

scikit-learn computes ROC-AUC, the curves and the confusion matrix; the loss is the true
mean of BCE-with-logits over all pairs (not a mean of batch means).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve,
                             average_precision_score)

from .stats import image_bootstrap_ci


def pair_metrics(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """loss (mean BCE over pairs), acc (threshold 0.5 on the probability) and ROC-AUC."""
    logits, target = logits.detach().float().cpu(), target.detach().float().cpu()
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum").item() / len(target)
    acc = ((logits > 0).float() == target).float().mean().item()
    auc = float(roc_auc_score(target.numpy(), logits.numpy()))
    return {"loss": loss, "acc": acc, "auc": auc}


def confusion(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """2x2 counts, rows = truth (0 different, 1 same), columns = prediction."""
    prob = torch.sigmoid(logits.float()).cpu().numpy()
    return confusion_matrix(target.cpu().numpy().astype(int), (prob > threshold).astype(int), labels=[0, 1])


def curves(logits: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray | float]:
    """ROC and precision-recall curves, AP, and accuracy against the probability threshold."""
    y = target.cpu().numpy().astype(int)
    prob = torch.sigmoid(logits.float()).cpu().numpy()
    fpr, tpr, _ = roc_curve(y, prob)
    precision, recall, _ = precision_recall_curve(y, prob)
    thresholds = np.linspace(0.0, 1.0, 201)
    acc = np.array([((prob > t).astype(int) == y).mean() for t in thresholds])
    best = int(np.argmax(acc))
    return {"fpr": fpr, "tpr": tpr, "auc": float(roc_auc_score(y, prob)),
            "precision": precision, "recall": recall, "ap": float(average_precision_score(y, prob)),
            "thresholds": thresholds, "threshold_acc": acc,
            "best_threshold": float(thresholds[best]), "best_threshold_acc": float(acc[best]),
            "prob": prob, "target": y}


def hardest_errors(logits: torch.Tensor, target: torch.Tensor, k: int = 16) -> np.ndarray:
    """Indices of the k misjudged pairs the model was most confident about."""
    prob = torch.sigmoid(logits.float()).cpu().numpy()
    y = target.cpu().numpy()
    wrong = np.flatnonzero((prob > 0.5) != (y > 0.5))
    return wrong[np.argsort(-np.abs(prob[wrong] - 0.5), kind="stable")][:k]


def probability(logits, temperature: float = 1.0) -> np.ndarray:
    """sigmoid(logits / temperature) in float64: the probability that a pair shows the same digit."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / temperature))


def choose_threshold(logits: torch.Tensor | np.ndarray, target) -> float:
    """The probability threshold with the highest accuracy on these pairs (a 0.005 grid;
    ties go to the threshold closest to 0.5). Choose it on validation pairs only."""
    prob = probability(logits)
    y = np.asarray(target).astype(int)
    grid = np.round(np.linspace(0.005, 0.995, 199), 3)
    acc = np.array([((prob > t).astype(int) == y).mean() for t in grid])
    best = np.flatnonzero(acc == acc.max())
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def accuracy_at(logits, target, threshold: float = 0.5) -> float:
    prob = probability(logits)
    return float(((prob > threshold).astype(int) == np.asarray(target).astype(int)).mean())


def results(logits: dict, data, cfg, history: list[dict], selected_epoch: int) -> dict:
    """A run's results.json from its scores (`logits`: "<best|final>_<set>" -> array) and its
    RunData: per pair set, for the selected and the final model; the threshold chosen on the
    selection pairs only."""
    sel = data.selection
    threshold = choose_threshold(logits[f"best_{sel}"], data.sets[sel].y.numpy())
    out = {"protocol": cfg.protocol, "selection": sel, "seed": cfg.seed, "data_seed": cfg.data_seed,
           "selected_epoch": selected_epoch, "epochs": len(history), "threshold": threshold,
           "best_test_acc": max(h["test_acc"] for h in history),  # best-of-epochs on test: the seed's number
           "train_seconds": sum(h["seconds"] for h in history)}
    for tag in ("best", "final"):
        for name, pairs in data.sets.items():
            out[f"{tag}_{name}"] = set_metrics(logits[f"{tag}_{name}"], pairs, threshold, name)
    return out


def set_metrics(z: np.ndarray, pairs, threshold: float, name: str) -> dict:
    """One pair set's entry of results.json: acc (threshold 0.5), AUC, loss, accuracy at the chosen
    threshold; for the held-out and confirmation sets, whose pairs share images, an interval that
    resamples images, not pairs."""
    y = pairs.y.numpy()
    m = pair_metrics(torch.from_numpy(z), pairs.y)
    entry = {"acc": m["acc"], "auc": m["auc"], "loss": m["loss"],
             "acc_at_threshold": accuracy_at(z, y, threshold), "pairs": len(y)}
    if name in ("heldout", "confirm"):
        correct = ((z > 0).astype(int) == y.astype(int))
        entry["ci95"] = list(image_bootstrap_ci(correct, pairs.a.numpy(), pairs.b.numpy(), len(pairs.labels)))
        entry["images"] = len(pairs.labels)
    return entry
