"""Inference throughput in pairs per second, on the real test subset.

    python benchmarks/bench_infer.py [--run reports/runs/seed_siamese] [--out FILE]

(i)  the model called on pairs: both images of every pair through the encoder, then the head;
(ii) one-against-many with cached embeddings: each of the 1,000 test images embedded once,
     then every query compared with the whole gallery through the head only
     (`mnist_pairs.models.embed_images` + `one_vs_many`): how a user searches a gallery.
Both use the same weights, in eval mode, under the project's autocast; the last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mnist_pairs import data as D
from mnist_pairs import train as T
from mnist_pairs.config import Config
from mnist_pairs.models import build_model, embed_images, one_vs_many
from mnist_pairs.paths import resolve
from timing import median_time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="reports/runs/seed_siamese", help="run folder with best.pt (random weights if absent)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    cfg, device = Config(), torch.device("cpu")
    run = resolve(args.run)
    if (run / "best.pt").is_file():
        model, cfg, _ = T.load_run(run, "best")
    else:
        print(f"{run} has no best.pt: timing random weights (throughput does not depend on them)")
        model = build_model("siamese").eval()
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    dtype = T.autocast_dtype(cfg, device)
    sub = D.load_subset(cfg.subset_fraction, cfg.seed)
    gallery = D.normalize(sub.test_images).contiguous(memory_format=fmt)          # (1000,1,28,28)
    n = len(gallery)
    a, b, _ = D.test_pairs(sub.test_labels, cfg.test_pairs, cfg.seed)

    def pairs_direct():
        with torch.no_grad(), T._autocast(device, dtype):
            for i in range(0, len(a), 1024):
                model(gallery[a[i:i + 1024]], gallery[b[i:i + 1024]])

    emb = embed_images(model, gallery)
    queries = emb[:100]

    def one_vs_gallery():
        with torch.no_grad(), T._autocast(device, dtype):
            for q in range(0, len(queries), 10):       # 10 queries x 1,000 gallery images per call
                one_vs_many(model, queries[q:q + 10], emb)

    def embed_gallery():
        with torch.no_grad(), T._autocast(device, dtype):
            embed_images(model, gallery)

    t_direct = median_time(pairs_direct, args.reps)
    t_cached = median_time(one_vs_gallery, args.reps)
    t_embed = median_time(embed_gallery, args.reps)
    r = {"direct_pairs_per_s": round(len(a) / t_direct), "cached_pairs_per_s": round(len(queries) * n / t_cached),
         "embed_images_per_s": round(n / t_embed), "gallery": n, "queries": len(queries),
         "autocast": str(dtype).replace("torch.", "") if dtype else "off", "threads": torch.get_num_threads()}
    r["cached_speedup"] = round(r["cached_pairs_per_s"] / r["direct_pairs_per_s"], 1)
    print(f"(i)  model on pairs:                 {r['direct_pairs_per_s']:>10,} pairs/s")
    print(f"(ii) cached embeddings, 1 vs {n}:  {r['cached_pairs_per_s']:>10,} pairs/s  ({r['cached_speedup']}x)")
    print(f"     embedding the gallery once:      {r['embed_images_per_s']:>10,} images/s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(r, indent=1))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
