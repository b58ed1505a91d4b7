"""Seconds per training epoch: the seed's style of data pipeline against the project's, side by side.

    python benchmarks/bench_epoch.py --out reports/benchmarks/bench_epoch.json   # full epochs, ~4 min
    python benchmarks/bench_epoch.py --quick --rounds 1    # 768 pairs (shared: 1,536 images) per timing, scaled to an epoch
    python benchmarks/bench_epoch.py --device cuda         # the same on a GPU (benchmarks/gpu.sh)

An epoch is 12,000 training pairs + scoring the 4,000 test pairs (protocol "test", no held-out
pairs). One process, same model, pairs and seed for every pipeline, timed alternately
(a, b, c, a, b, c, …) after a warm-up so that drift hits all; the median is reported.
(a) seed style: a pair Dataset with per-sample torchvision v2 transforms (random affine +
    random blur) in a DataLoader (workers = CPU count, pinned memory, prefetch,
    non_blocking copies), fp32 on the CPU (fp16 autocast on CUDA, as the seed), test pairs
    encoded pair by pair.
(b) project: `mnist_pairs.train` as `fit` runs it (data resident on the device, batched tensor
    augmentation, channels_last, test images embedded once) at the precision `fit` resolves
    here ("auto": bf16 on CPUs with native bf16, fp16 on CUDA, else fp32);
(c) the same at precision fp32;
(d) shared encoding (`pairing: shared`, the precision of (b)): an epoch is one pass over the
    training images, each encoded once, with every same-digit pair of a batch and as many
    different ones (~125,000 pairs from 5,000 encodings); always timed whole, never scaled.
    It is a different epoch: whether it reaches the same accuracy is the ablation's question
    (report §5), not this benchmark's;
(e) (b) with `fused_blocks: true` (fused.py: BatchNorm -> ReLU -> pool as one C++ kernel each;
    CPU only): the same arithmetic, the fastest seed-faithful setting.
Also the compute floor: forward + backward + step alone on one fixed batch, and its FLOP rate.
Writes data only: the last line printed is one JSON object; `--out FILE` also writes it.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from mnist_pairs.data import load_data, train_pairs
from mnist_pairs import hardware
from mnist_pairs import train
from mnist_pairs.augment import MNIST_MEAN, MNIST_STD
from mnist_pairs.config import Config
from mnist_pairs.models import build_model
from timing import emit, provenance

QUICK_PAIRS, WARMUP_PAIRS = 768, 256
QUICK_IMAGES = 1536  # --quick: images per timed shared-encoding epoch, scaled to all of them


class SeedPairDataset(Dataset):
    """Pairs given by index arrays; each image transformed on its own, as the seed did."""

    def __init__(self, images_u8: torch.Tensor, a, b, y, train: bool, cfg: Config):
        self.images, self.a, self.b, self.y = images_u8, a, b, y
        base = [v2.ToDtype(torch.float32, scale=True)]
        aug = [v2.RandomAffine(degrees=cfg.aug_degrees, translate=(cfg.aug_translate, cfg.aug_translate),
                               scale=(cfg.aug_scale_min, cfg.aug_scale_max)),
               v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, cfg.aug_blur_sigma_max))], p=cfg.aug_blur_prob)]
        self.tf = v2.Compose((aug if train else []) + base + [v2.Normalize([MNIST_MEAN], [MNIST_STD])])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.tf(self.images[self.a[i]]), self.tf(self.images[self.b[i]]), self.y[i]


def seed_worker(worker_id: int) -> None:  # the seed seeded its workers; so do we
    torch.manual_seed(torch.initial_seed() % 2**31 + worker_id)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_test_pairs(data: train.DeviceData, k: int) -> train.DeviceData:
    """A shallow copy of data keeping only its first k test pairs."""
    t = data.cpu.sets["test"]
    short = copy.copy(data)
    short.cpu = dataclasses.replace(data.cpu, sets={"test": dataclasses.replace(t, a=t.a[:k], b=t.b[:k], y=t.y[:k])})
    return short


def cut(cfg: Config, data: train.DeviceData, n_pairs: int) -> tuple[Config, train.DeviceData]:
    """The config and data of a shortened epoch: n_pairs training pairs and a third as many test
    pairs, in the proportion of a full epoch (12,000 : 4,000)."""
    return cfg.replace(train_pairs=n_pairs), _first_test_pairs(data, n_pairs // 3)


def cut_images(data: train.DeviceData, n_images: int) -> train.DeviceData:
    """The data of a shortened shared-encoding epoch: the first n_images training images and the
    test pairs in the same proportion to a full epoch (6,000 images : 4,000 pairs)."""
    short = _first_test_pairs(data, len(data.cpu.sets["test"].y) * n_images // len(data.train_labels))
    short.train_images, short.train_labels = data.train_images[:n_images], data.train_labels[:n_images]
    return short


def seed_style_epoch(model, opt, scaler, cfg: Config, data: train.DeviceData, epoch: int, device, precision: str) -> float:
    t0 = time.perf_counter()
    a, b, y = train_pairs(data.cpu.train_labels, cfg.train_pairs, cfg.seed, epoch)
    to_u8 = lambda x: (x * 255).round().to(torch.uint8)  # (N,1,28,28) uint8, as PIL/ToTensor saw them
    workers, pin = os.cpu_count() or 1, device.type == "cuda"
    loader = DataLoader(SeedPairDataset(to_u8(data.cpu.train_images), a, b, y, True, cfg), batch_size=cfg.batch_size,
                        shuffle=False, num_workers=workers, pin_memory=pin, prefetch_factor=2,
                        worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(epoch))
    model.train()
    for xa, xb, yy in loader:
        xa, xb, yy = (t.to(device, non_blocking=True) for t in (xa, xb, yy))
        with hardware.autocast(device, precision):
            logits = model(xa, xb)
        loss = F.binary_cross_entropy_with_logits(logits.float(), yy)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    test = data.cpu.sets["test"]
    model.eval()
    with torch.no_grad(), hardware.autocast(device, precision):
        for xa, xb, _ in DataLoader(SeedPairDataset(to_u8(test.images), test.a, test.b, test.y, False, cfg),
                                    batch_size=cfg.batch_size, num_workers=workers, pin_memory=pin):
            model(xa.to(device, non_blocking=True), xb.to(device, non_blocking=True))
    _sync(device)
    return time.perf_counter() - t0


def project_epoch(model, opt, scaler, cfg: Config, data: train.DeviceData, epoch: int, device, precision: str) -> float:
    t0 = time.perf_counter()
    train.train_one_epoch(model, opt, scaler, data, cfg, epoch, device, precision)
    train.evaluate(model, data, cfg, device, precision)
    _sync(device)
    return time.perf_counter() - t0


def compute_floor(cfg: Config, device, precision: str, reps: int, fused: bool = False) -> tuple[float, float]:
    """(seconds per fwd+bwd+step on one batch, FLOPs of that step) with the project's settings."""
    torch.manual_seed(0)
    fmt = hardware.memory_format(cfg)
    model = build_model(cfg.model, fused=fused).to(device, memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    xa = torch.randn(cfg.batch_size, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    xb = torch.randn(cfg.batch_size, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(cfg.batch_size, device=device) > 0.5).float()

    def step():
        with hardware.autocast(device, precision):
            logits = model(xa, xb)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    for _ in range(3):
        step()
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), counter.get_total_flops()


def run(quick: bool, rounds: int, device_name: str = "cpu", pairs: int = QUICK_PAIRS) -> dict:
    """`pairs`: with `quick`, the training pairs per timed epoch (warm-up a third of them, a shared-encoding
    pass over twice as many images, a third of the compute-floor repetitions per 768), scaled to a full epoch."""
    cfg = Config(device=device_name, protocol="test", heldout_pairs=0)
    device = hardware.resolve_device(cfg)
    precision = hardware.resolve_precision(cfg, device)
    hardware.setup_backend(cfg, device)
    data = train.DeviceData(load_data(cfg), cfg, device)
    fmt = hardware.memory_format(cfg)
    torch.manual_seed(cfg.seed)

    def learner(channels_last: bool, fused: bool = False):
        model = build_model(cfg.model, fused=fused).to(device, memory_format=fmt if channels_last else torch.contiguous_format)
        return model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def scaler(p: str):
        return torch.amp.GradScaler(device.type, enabled=p == "fp16")

    seed_p = "fp16" if device.type == "cuda" else "fp32"  # the seed: AMP on CUDA only
    pipelines = {  # name: (epoch function, model, optimizer, scaler, precision)
        "seed": (seed_style_epoch, *learner(False), scaler(seed_p), seed_p),
        "project": (project_epoch, *learner(True), scaler(precision), precision),
        "project_fp32": (project_epoch, *learner(True), scaler("fp32"), "fp32"),
        "shared": (project_epoch, *learner(True), scaler(precision), precision),
    }
    if device.type == "cpu":  # the fused kernels are CPU code (fused.require)
        pipelines["fused"] = (project_epoch, *learner(True, fused=True), scaler(precision), precision)
    shared_cfg = cfg.replace(pairing="shared")

    # a shared-encoding epoch is one pass over the training images: --quick times a pass over some
    shared_data = cut_images(data, QUICK_IMAGES * pairs // QUICK_PAIRS) if quick else data
    shared_scale = len(data.train_labels) / len(shared_data.train_labels)

    def time_epoch(name: str, c: Config, d: train.DeviceData, epoch: int) -> float:
        fn, model, opt, sc, p = pipelines[name]
        if name == "shared":  # it does not shorten with train_pairs
            return fn(model, opt, sc, shared_cfg, shared_data, epoch, device, p) * shared_scale
        return fn(model, opt, sc, c, d, epoch, device, p)

    warm_cfg, warm_data = cut(cfg, data, WARMUP_PAIRS * pairs // QUICK_PAIRS if quick else WARMUP_PAIRS)
    for name in pipelines:
        time_epoch(name, warm_cfg, warm_data, 1)
    ep_cfg, ep_data = cut(cfg, data, pairs) if quick else (cfg, data)
    scale = cfg.train_pairs / ep_cfg.train_pairs
    times = {name: [] for name in pipelines}
    for r in range(rounds):
        for name in pipelines:
            times[name].append(time_epoch(name, ep_cfg, ep_data, 2 + r) * (1 if name == "shared" else scale))
        print(f"round {r + 1}/{rounds}: " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)

    reps = max(3, 10 * pairs // QUICK_PAIRS) if quick else 30
    step_s, step_flops = compute_floor(cfg, device, precision, reps=reps)
    fused = {}
    if "fused" in pipelines:
        fused_step_s, _ = compute_floor(cfg, device, precision, reps=reps, fused=True)
        f = statistics.median(times["fused"])
        fused = {"fused_s_per_epoch": round(f, 3), "fused_speedup": round(statistics.median(times["seed"]) / f, 3),
                 "compute_only_fused_s_per_epoch": round(fused_step_s * -(-cfg.train_pairs // cfg.batch_size), 3)}
    steps = -(-cfg.train_pairs // cfg.batch_size)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # this process (project pipeline)
    rss_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest DataLoader worker
    med = {k: statistics.median(v) for k, v in times.items()}
    dtype = hardware.AUTOCAST[precision]
    return {"seed_style_s_per_epoch": round(med["seed"], 3), "project_s_per_epoch": round(med["project"], 3),
            "project_fp32_s_per_epoch": round(med["project_fp32"], 3),
            "shared_s_per_epoch": round(med["shared"], 3), "shared_speedup": round(med["seed"] / med["shared"], 3),
            "speedup": round(med["seed"] / med["project"], 3), **fused,
            "compute_only_s_per_epoch": round(step_s * steps, 3),
            "gflops_achieved": round(step_flops / step_s / 1e9, 1),
            "flop_per_epoch_T": round(step_flops * steps / 1e12, 3),
            "train_pairs": cfg.train_pairs, "test_pairs": cfg.test_pairs, "steps_per_epoch": steps,
            "peak_rss_mb": round(rss, 1), "peak_rss_worker_mb": round(rss_workers, 1), "quick": quick, "rounds": rounds,
            "precision": precision, "autocast": str(dtype).replace("torch.", "") if dtype else "off",
            "cpu_native_bf16": hardware.cpu_has_native_bf16(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_PAIRS} pairs per timing, scaled to a full epoch")
    p.add_argument("--pairs", type=int, default=QUICK_PAIRS,
                   help=f"with --quick: training pairs per timed epoch (default {QUICK_PAIRS}; the tests use fewer)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default 3)")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    if args.pairs < 64:
        p.error(f"--pairs must be at least 64, got {args.pairs}")
    emit({**run(args.quick, args.rounds, args.device, args.pairs), **provenance(__file__, argv)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
