"""Each speed lever measured alone, on one fixed batch, in one process.

    python benchmarks/bench_levers.py [--out reports/benchmarks/bench_levers.json] [--compile]

Rows: a training step (forward + backward + AdamW, 256 pairs of the Siamese net) in
fp32 NCHW, channels_last, bfloat16 autocast, both, with 1 and with all threads, and with
torch.compile (compile time reported apart); the batched augmentation of one batch; and
evaluation of the 4,000 test pairs with and without cached embeddings. Median of repeats;
each row also as seconds per epoch (47 steps of 256 pairs). The last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# A cold compile cache, so the compile time below is what a first run pays.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor_"))

import torch
import torch.nn.functional as F

from mnist_pairs import data as D
from mnist_pairs import train as T
from mnist_pairs.config import Config
from mnist_pairs.models import build_model
from timing import median_time

STEPS_PER_EPOCH = 47


def train_step_time(channels_last: bool, dtype, threads: int, compile_: bool = False, reps: int = 15):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model("siamese").to(memory_format=fmt)
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=8e-4)
    xa = torch.randn(256, 1, 28, 28).contiguous(memory_format=fmt)
    xb = torch.randn(256, 1, 28, 28).contiguous(memory_format=fmt)
    y = (torch.rand(256) > 0.5).float()

    def step():
        with T._autocast(torch.device("cpu"), dtype):
            logits = step_model(xa, xb)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()  # with compile: the compilation happens here
    first = time.perf_counter() - t0
    return median_time(step, reps, warmup=3), first


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler; slow)")
    args = p.parse_args(argv)
    all_threads = torch.get_num_threads()
    bf16 = torch.bfloat16 if T.cpu_has_native_bf16() else None
    rows = {}
    for name, cl, dtype, th in [("fp32 NCHW", False, None, all_threads), ("fp32 channels_last", True, None, all_threads),
                                ("bf16 NCHW", False, bf16, all_threads), ("bf16 channels_last (default)", True, bf16, all_threads),
                                ("bf16 channels_last, 1 thread", True, bf16, 1)]:
        if dtype is None and "bf16" in name:
            continue
        s, _ = train_step_time(cl, dtype, th)
        rows[name] = {"step_ms": round(1000 * s, 1), "s_per_epoch": round(s * STEPS_PER_EPOCH, 2)}
        print(f"{name:<34} {rows[name]['step_ms']:>8.1f} ms/step  {rows[name]['s_per_epoch']:>6.2f} s/epoch", flush=True)
    torch.set_num_threads(all_threads)
    if args.compile:
        s, first = train_step_time(True, bf16, all_threads, compile_=True, reps=10)
        rows["bf16 channels_last + torch.compile"] = {"step_ms": round(1000 * s, 1), "s_per_epoch": round(s * STEPS_PER_EPOCH, 2),
                                                      "compile_s": round(first, 1)}
        print(f"{'bf16 channels_last + torch.compile':<34} {1000 * s:>8.1f} ms/step  {s * STEPS_PER_EPOCH:>6.2f} s/epoch"
              f"  (compile {first:.1f} s)", flush=True)

    cfg = Config()
    sub = D.load_subset()
    a, b, _ = D.train_pairs(sub.train_labels, cfg.train_pairs, cfg.seed, 1)
    aug = D.draw_aug(512, cfg, D.aug_generator(cfg.seed, 1))
    idx = torch.cat([a[:256], b[:256]])
    s = median_time(lambda: D.normalize(D.augment(sub.train_images[idx], aug)), 20)
    rows["batched augmentation (512 images)"] = {"step_ms": round(1000 * s, 1), "s_per_epoch": round(s * STEPS_PER_EPOCH, 2)}
    print(f"{'batched augmentation (512 images)':<34} {1000 * s:>8.1f} ms/batch {s * STEPS_PER_EPOCH:>6.2f} s/epoch")

    data = T.PairData(cfg, torch.device("cpu"))
    model = build_model("siamese").to(memory_format=torch.channels_last).eval()
    dev = torch.device("cpu")
    s_cached = median_time(lambda: T.evaluate(model, data, cfg, dev, bf16), 5, 1)
    images = data.test_images

    def eval_uncached():
        with torch.no_grad(), T._autocast(dev, bf16):
            for i in range(0, len(data.test_a), cfg.batch_size):
                model(images[data.test_a[i:i + cfg.batch_size]], images[data.test_b[i:i + cfg.batch_size]])

    s_plain = median_time(eval_uncached, 5, 1)
    rows["evaluation, pairs at batch 256"] = {"step_ms": round(1000 * s_plain, 1), "s_per_epoch": round(s_plain, 2)}
    rows["evaluation, cached embeddings (default)"] = {"step_ms": round(1000 * s_cached, 1), "s_per_epoch": round(s_cached, 2)}
    print(f"{'evaluation, pairs at batch 256':<34} {s_plain:>8.2f} s/epoch")
    print(f"{'evaluation, cached embeddings':<34} {s_cached:>8.2f} s/epoch")
    out = {"rows": rows, "threads": all_threads, "cpu": T.environment(dev)["cpu"], "torch": torch.__version__}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1))
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
