"""Choose the augmentation on validation pairs, under a rule fixed before any of these runs.

The seed names its augmentation (random affine + random blur) but not its strengths, nor how
pixels are resampled. Candidates: two strengths (A_mild, B_medium) crossed with two
interpolations (bilinear: sub-pixel shifts that soften strokes; nearest: whole pixels, as
torchvision's RandomAffine does by default). Each candidate trains params/seed_siamese.yaml
under the validation protocol (1,000 of the 6,000 training images held out, stratified;
4,000 fixed pairs among them) for training seeds 0, 1, 2.

RULE (written down before the runs; the test and held-out numbers these runs also record are
not read by it): the winner has the highest validation accuracy averaged over the last 5
epochs and over the 3 training seeds. Ties (equal when rounded to 4 decimals) go to the
candidate listed first below (milder, then bilinear).

History: an earlier rule (best mean validation accuracy of one seed, then "ties within one
standard error -> the training curve closest to the seed's") was changed after test numbers
had been committed; it is replaced by this one, and the report says so.

    python tools/select_augmentation.py     # 12 runs of 25 epochs (~35 min on 2 CPU cores with bf16)
Finished runs (experiments/augsel/*/results.json) are read, not retrained.
Writes reports/aug_selection.json and prints the choice.
"""
from __future__ import annotations

import json
import statistics

from mnist_pairs.config import load_config
from mnist_pairs.paths import REPORTS_DIR, atomic_write_text
from mnist_pairs.runs import Run
from mnist_pairs.train import fit

SEEDS = (0, 1, 2)
STRENGTHS = {
    "A_mild": dict(aug_degrees=10.0, aug_translate=0.1, aug_scale_min=0.9, aug_scale_max=1.1,
                   aug_blur_prob=0.3, aug_blur_sigma_max=1.0),
    "B_medium": dict(aug_degrees=15.0, aug_translate=0.15, aug_scale_min=0.85, aug_scale_max=1.15,
                     aug_blur_prob=0.5, aug_blur_sigma_max=1.5),
}
CANDIDATES = {f"{s}_{i}": {**v, "aug_interpolation": i} for s, v in STRENGTHS.items() for i in ("bilinear", "nearest")}
RULE = ("highest validation accuracy averaged over the last 5 epochs and over training seeds "
        f"{', '.join(map(str, SEEDS))}; ties at 4 decimals go to the candidate listed first")


def run_candidate(name: str, seed: int) -> Run:
    cfg = load_config("params/seed_siamese.yaml", protocol="validation", seed=seed,
                      out_dir="experiments/augsel", run_name=f"{name}_s{seed}", **CANDIDATES[name])
    run_dir = cfg.out_path / cfg.run_name
    if (run_dir / "results.json").is_file():
        return Run(run_dir)
    if (run_dir / "last.pt").is_file():
        return fit(resume=run_dir)
    return fit(cfg)


def main() -> None:
    table = {}
    for name in CANDIDATES:
        per_seed = {}
        for seed in SEEDS:
            run = run_candidate(name, seed)
            h = run.records
            per_seed[str(seed)] = {"val_acc_last5": statistics.mean(r["val_acc"] for r in h[-5:]),
                                   "run": str(run.dir.relative_to(run.dir.parents[2]))}
        vals = [r["val_acc_last5"] for r in per_seed.values()]
        table[name] = {**CANDIDATES[name], "seeds": per_seed, "val_acc_last5_mean": statistics.mean(vals),
                       "val_acc_last5_sd": statistics.stdev(vals)}
        print(name, json.dumps(table[name]), flush=True)
    winner = max(table, key=lambda k: (round(table[k]["val_acc_last5_mean"], 4), -list(table).index(k)))
    out = {"rule": RULE, "seeds": list(SEEDS), "candidates": table, "chosen": winner,
           "command": "python tools/select_augmentation.py"}
    atomic_write_text(REPORTS_DIR / "aug_selection.json", json.dumps(out, indent=1))
    print(f"chosen: {winner}")


if __name__ == "__main__":
    main()
