"""Each speed lever measured alone on the CPU, on one fixed batch, in one process.

    python benchmarks/bench_levers.py --compile --out reports/benchmarks/bench_levers.json
    python benchmarks/bench_levers.py            # without torch.compile (no C++ compiler needed)

Rows: a training step (forward + backward + AdamW, 256 pairs of the Siamese net) in fp32
NCHW, fp32 channels_last, and, where the CPU runs bf16 natively, bf16 autocast NCHW and
channels_last; the default setting ("auto" precision, channels_last) with 1 thread; with
--compile, the default setting under torch.compile (compile time reported apart, from a cold
compile cache); the batched augmentation of one batch; and scoring the 4,000 test pairs pair
by pair at batch 256 and with cached embeddings (as `evaluate` does). Median of repeats; each
row also as seconds per epoch (47 steps of 256 pairs; one scoring of the test pairs).
Writes data only: the last line printed is one JSON object; `--out FILE` also writes it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

# A cold compile cache, so the compile time below is what a first run pays.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor_"))

import torch
import torch.nn.functional as F

from mnist_pairs import augment
from mnist_pairs.data import load_data, train_pairs
from mnist_pairs import hardware
from mnist_pairs import train
from mnist_pairs.config import Config
from mnist_pairs.models import build_model
from timing import emit, median_time, provenance

CFG = Config(protocol="test", heldout_pairs=0)
STEPS_PER_EPOCH = -(-CFG.train_pairs // CFG.batch_size)  # 47
CPU = torch.device("cpu")


def train_step_time(channels_last: bool, precision: str, threads: int, compile_: bool = False, reps: int = 15):
    """(median seconds of one training step, seconds of the first step: the compilation if any)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model("siamese").to(memory_format=fmt)
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=CFG.lr)
    xa = torch.randn(CFG.batch_size, 1, 28, 28).contiguous(memory_format=fmt)
    xb = torch.randn(CFG.batch_size, 1, 28, 28).contiguous(memory_format=fmt)
    y = (torch.rand(CFG.batch_size) > 0.5).float()

    def step():
        with hardware.autocast(CPU, precision):
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
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler; slow)")
    args = p.parse_args(argv)
    all_threads = torch.get_num_threads()
    default = hardware.resolve_precision(CFG, CPU)  # bf16 where the CPU has native bf16, else fp32
    cases = [("fp32", False), ("fp32", True)] + ([("bf16", False), ("bf16", True)] if hardware.cpu_has_native_bf16() else [])
    rows = {}

    def add(name: str, seconds: float, per_epoch: int, **extra) -> None:
        """A row: milliseconds per step (or per evaluation) and seconds per epoch."""
        r = rows[name] = {"step_ms": round(1000 * seconds, 1), "s_per_epoch": round(seconds * per_epoch, 2), **extra}
        print(f"{name:<40} {r['step_ms']:>8.1f} ms  {r['s_per_epoch']:>6.2f} s/epoch"
              + (f"  (compile {extra['compile_s']} s)" if extra else ""), flush=True)

    for precision, cl in cases:
        name = f"{precision} {'channels_last' if cl else 'NCHW'}"
        name += " (default)" if (precision, cl) == (default, True) else ""
        add(name, train_step_time(cl, precision, all_threads)[0], STEPS_PER_EPOCH)
    add(f"{default} channels_last, 1 thread", train_step_time(True, default, 1)[0], STEPS_PER_EPOCH)
    torch.set_num_threads(all_threads)
    if args.compile:
        s, first = train_step_time(True, default, all_threads, compile_=True, reps=10)
        add(f"{default} channels_last + torch.compile", s, STEPS_PER_EPOCH, compile_s=round(first, 1))

    data = train.DeviceData(load_data(CFG), CFG, CPU)
    n = CFG.batch_size  # one batch of pairs: both sides augmented in one call, as train_one_epoch does
    a, b, _ = train_pairs(data.train_labels, n, CFG.seed, 1)
    aug = augment.draw_aug(2 * n, CFG, augment.aug_generator(CFG.seed, 1))
    s = median_time(lambda: augment.normalize(augment.augment_pair_batch(data.train_images, a, b, aug, 0, n)), 20)
    add(f"batched augmentation ({2 * n} images)", s, STEPS_PER_EPOCH)

    model = build_model("siamese").to(memory_format=hardware.memory_format(CFG)).eval()
    test, images = data.cpu.sets["test"], data.eval_images["test"]

    def eval_uncached():
        with torch.no_grad(), hardware.autocast(CPU, default):
            for i in range(0, len(test.a), CFG.batch_size):
                model(images[test.a[i:i + CFG.batch_size]], images[test.b[i:i + CFG.batch_size]])

    add("evaluation, pairs at batch 256", median_time(eval_uncached, 5, 1), 1)
    s = median_time(lambda: train.evaluate(model, data, CFG, CPU, default), 5, 1)
    add("evaluation, cached embeddings (default)", s, 1)  # as every epoch of `fit` scores the test pairs
    emit({"rows": rows, "steps_per_epoch": STEPS_PER_EPOCH, "precision": default, "cpu_native_bf16": hardware.cpu_has_native_bf16(),
          **provenance(__file__, argv)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
