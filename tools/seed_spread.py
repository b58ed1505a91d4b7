"""How much do the study's numbers move with the random seed?

The seed keys the 10 % subset, the test pairs, every epoch's pairs, the augmentation and the
initialisation, so each seed is a full re-draw of the experiment. Trains params/seed_siamese.yaml
for each seed given (default 1 2 3; ~2.7 min each on 2 CPU cores) and writes
reports/seed_spread.json, which the report's ③ row and comparison section read.

    python tools/seed_spread.py [SEED ...]
"""
from __future__ import annotations

import json
import statistics
import sys

from mnist_pairs.config import load_config
from mnist_pairs.paths import REPORTS_DIR, atomic_write_text
from mnist_pairs.train import fit, read_history


def main(seeds: list[int]) -> None:
    runs = {}
    for seed in seeds or [1, 2, 3]:
        hist = read_history(fit(load_config("params/seed_siamese.yaml", seed=seed, run_name=f"seedspread_{seed}")))
        best = max(hist, key=lambda r: r["test_acc"])
        runs[str(seed)] = {"best_test_acc": best["test_acc"], "best_epoch": best["epoch"], "best_test_auc": best["test_auc"],
                           "final_test_acc": hist[-1]["test_acc"]}
        print(seed, runs[str(seed)], flush=True)
    accs = [r["best_test_acc"] for r in runs.values()]
    summary = {"runs": runs, "best_test_acc_mean": statistics.mean(accs),
               "best_test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "command": "python tools/seed_spread.py " + " ".join(runs)}
    atomic_write_text(REPORTS_DIR / "seed_spread.json", json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]])
