"""`python -m mnist_pairs compare`: real pictures in, the probability of the same digit out.

    compare a.png b.png                    # P(same digit) and the decision at the run's threshold
    compare query.png --gallery photos/    # every picture of photos/ ranked against the query
    compare a.png b.png --onnx out/onnx --json
    compare a.png b.png --ensemble         # the published ensemble: its members' mean logit

Pictures are converted like MNIST (images.load_digit). The threshold is the one the run chose
on its selection pairs (validation under the validation protocol).
"""
from __future__ import annotations

import json

import numpy as np
import torch

from .deploy import open_scorer
from ..errors import ConfigError
from .images import image_files, load_digit
from ..metrics import probability


def compare(args) -> int:
    if args.gallery and len(args.images) != 1:
        raise ConfigError("with --gallery give exactly one query picture")
    if not args.gallery and len(args.images) != 2:
        raise ConfigError(f"give two pictures to compare (got {len(args.images)}), or one query with --gallery DIR")
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    files = [args.images[0], *(image_files(args.gallery) if args.gallery else args.images[1:])]
    images = torch.stack([load_digit(f) for f in files])          # every picture checked before scoring
    scorer = open_scorer(args.run, args.onnx, args.ensemble)
    emb = scorer.embed(images)
    p = probability(scorer.logits(np.repeat(emb[:1], len(files) - 1, axis=0), emb[1:]))
    t = scorer.threshold
    rows = [{"image": str(f), "probability": round(float(q), 6), "same": bool(q > t)} for f, q in zip(files[1:], p)]
    out = {"query": str(files[0]), "threshold": t, "threshold_chosen_on": scorer.selection, "scorer": scorer.source}
    if args.gallery:
        rows.sort(key=lambda r: -r["probability"])
        out["matches"] = rows[:args.top]
        out["gallery_size"] = len(rows)
    else:
        out.update(rows[0])
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    where = f"threshold {t:.3f}, chosen on the {scorer.selection} pairs; model {scorer.source}"
    if args.gallery:
        print(f"{files[0]} against {len(rows)} pictures in {args.gallery} ({where}):")
        for i, r in enumerate(out["matches"], 1):
            print(f"{i:>3}. P(same) {r['probability']:.4f}  {'same' if r['same'] else 'different'}  {r['image']}")
    else:
        print(f"P(same digit) = {out['probability']:.4f} -> {'same' if out['same'] else 'different'} ({where})")
    return 0
