"""The study's statistics, in one place: the mean and 95 % t-interval over training seeds, the
paired difference of two configurations seed by seed, the 95 % prediction interval for one new
run, and the image-level bootstrap interval of one model's pair accuracy."""
from __future__ import annotations

import math
import statistics

import numpy as np
from scipy import stats as sps


def t95(n: int) -> float:
    """The two-sided 95 % Student-t quantile for a sample of n (nan below 2)."""
    return float(sps.t.ppf(0.975, n - 1)) if n > 1 else math.nan


def interval(xs: list[float]) -> dict:
    """mean, sd and the 95 % t-interval of the mean of xs."""
    m = statistics.mean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    half = t95(len(xs)) * sd / math.sqrt(len(xs)) if len(xs) > 1 else math.nan
    return {"mean": m, "sd": sd, "ci95": [m - half, m + half], "n": len(xs)}


def paired(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """The interval of the mean of a − b over the keys (training seeds) both have; None below 2."""
    diffs = [a[k] - b[k] for k in a if k in b]
    return interval(diffs) if len(diffs) > 1 else None


def prediction_interval(mean: float, sd: float, n: int) -> tuple[float, float]:
    """The 95 % prediction interval for one new run of a group of n runs (mean, sd)."""
    half = t95(n) * sd * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


def image_bootstrap_ci(correct, idx_a, idx_b, n_images: int, reps: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """A percentile interval for pair accuracy that resamples *images*, not pairs.

    Pairs share images (40,000 pairs of 9,000 images use each about 9 times), so their
    errors are not independent and a pair-level bootstrap is too narrow. Each replicate
    draws the images with replacement; a pair counts as often as the product of its two
    images' counts.
    """
    correct = np.asarray(correct, dtype=np.float64)
    a, b = np.asarray(idx_a), np.asarray(idx_b)
    rng = np.random.default_rng(seed)
    reps_acc = np.empty(reps)
    for r in range(reps):
        w = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images).astype(np.float64)
        pw = w[a] * w[b]
        reps_acc[r] = (pw * correct).sum() / pw.sum()
    lo, hi = np.quantile(reps_acc, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
