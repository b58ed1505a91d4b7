"""Inference throughput on the CPU, in pairs per second, on the real 1,000 test images and 4,000 test pairs.

    python benchmarks/bench_infer.py --out reports/benchmarks/bench_infer.json
    python benchmarks/bench_infer.py --run experiments/<run> --reps 1

(i)  the model called on pairs: both images of every pair through the encoder, then the head;
(ii) one-against-many with cached embeddings: each of the 1,000 test images embedded once,
     then every query compared with the whole gallery through the head only
     (`mnist_pairs.models.embed_images` + `one_vs_many`): how a user searches a gallery;
also how fast the gallery is embedded; and, for a run with best.pt, (i) and (ii) again with the
run's ONNX export in onnxruntime (fp32; `mnist_pairs.serve.deploy`). Both use the same weights (the run's best.pt, or random
weights when the run folder has none: throughput does not depend on them), in eval mode, with
the project's defaults on this CPU (channels_last, the precision "auto" resolves to). Median of
--reps. Writes data only: the last line printed is one JSON object; `--out FILE` also writes it.
"""
from __future__ import annotations

import argparse
import sys

import torch

from mnist_pairs.data import load_data
from mnist_pairs import hardware
from mnist_pairs.augment import normalize
from mnist_pairs.config import Config
from mnist_pairs.errors import UserError
from mnist_pairs.models import build_model, embed_images, one_vs_many
from mnist_pairs.paths import resolve
from mnist_pairs.runs import Run
from timing import emit, median_time, provenance


def onnx_rows(run: Run, test, n_queries: int, reps: int) -> dict:
    """The same two measurements with the run's ONNX export in onnxruntime (CPU, fp32)."""
    import tempfile

    import numpy as np
    import onnxruntime as ort

    from mnist_pairs.serve.deploy import OnnxScorer, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(run, tmp, pair=True)
        scorer = OnnxScorer(tmp)
        pair = ort.InferenceSession(f"{tmp}/pair.onnx", providers=["CPUExecutionProvider"])
        images = test.images.numpy()
        a, b = test.a.numpy(), test.b.numpy()
        emb = scorer.embed(test.images)
        q = np.repeat(emb[:n_queries], len(emb), axis=0)
        g = np.tile(emb, (n_queries, 1))

        def pairs_direct():
            for i in range(0, len(a), 1024):
                pair.run(None, {"a": images[a[i:i + 1024]], "b": images[b[i:i + 1024]]})

        def one_vs_gallery():
            step = 10 * len(emb)                          # 10 queries x the gallery per call, as above
            for i in range(0, len(q), step):
                scorer.logits(q[i:i + step], g[i:i + step])

        t_direct, t_cached = median_time(pairs_direct, reps), median_time(one_vs_gallery, reps)
    return {"onnx_direct_pairs_per_s": round(len(a) / t_direct), "onnx_cached_pairs_per_s": round(len(q) / t_cached),
            "onnx_precision": "fp32", "onnxruntime": ort.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="reports/runs/seed_siamese",
                   help="run folder with best.pt (random weights if it has none)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    args = p.parse_args(argv)
    cfg, device = Config(protocol="test", heldout_pairs=0), torch.device("cpu")
    run = None
    if (resolve(args.run) / "best.pt").is_file():
        try:
            run = Run.open(args.run)
            model = run.model()
        except UserError as e:  # a run folder that cannot be read: say why, no traceback
            sys.exit(f"error: {e}")
    else:
        print(f"{resolve(args.run)} has no best.pt: timing random weights (throughput does not depend on them)")
        model = build_model("siamese").eval()
    fmt = hardware.memory_format(cfg)
    model = model.to(memory_format=fmt)
    precision = hardware.resolve_precision(cfg, device)
    test = load_data(cfg).sets["test"]
    gallery = normalize(test.images).contiguous(memory_format=fmt)          # (1000,1,28,28)
    n, a, b = len(gallery), test.a, test.b

    def pairs_direct():
        with torch.no_grad(), hardware.autocast(device, precision):
            for i in range(0, len(a), 1024):
                model(gallery[a[i:i + 1024]], gallery[b[i:i + 1024]])

    emb = embed_images(model, gallery)
    queries = emb[:100]

    def one_vs_gallery():
        with torch.no_grad(), hardware.autocast(device, precision):
            for q in range(0, len(queries), 10):       # 10 queries x 1,000 gallery images per call
                one_vs_many(model, queries[q:q + 10], emb)

    def embed_gallery():
        with torch.no_grad(), hardware.autocast(device, precision):
            embed_images(model, gallery)

    t_direct = median_time(pairs_direct, args.reps)
    t_cached = median_time(one_vs_gallery, args.reps)
    t_embed = median_time(embed_gallery, args.reps)
    dtype = hardware.AUTOCAST[precision]
    r = {"direct_pairs_per_s": round(len(a) / t_direct), "cached_pairs_per_s": round(len(queries) * n / t_cached),
         "embed_images_per_s": round(n / t_embed), "gallery": n, "queries": len(queries),
         "precision": precision, "autocast": str(dtype).replace("torch.", "") if dtype else "off"}
    r["cached_speedup"] = round(r["cached_pairs_per_s"] / r["direct_pairs_per_s"], 1)
    if run is not None:
        r |= onnx_rows(run, test, len(queries), args.reps)
    print(f"(i)  model on pairs:                 {r['direct_pairs_per_s']:>10,} pairs/s")
    print(f"(ii) cached embeddings, 1 vs {n}:  {r['cached_pairs_per_s']:>10,} pairs/s  ({r['cached_speedup']}x)")
    print(f"     embedding the gallery once:      {r['embed_images_per_s']:>10,} images/s")
    if run is not None:
        print(f"(iii) onnxruntime fp32, pair graph:   {r['onnx_direct_pairs_per_s']:>10,} pairs/s")
        print(f"(iv) onnxruntime fp32, cached:        {r['onnx_cached_pairs_per_s']:>10,} pairs/s")
    emit({**r, **provenance(__file__, argv)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
