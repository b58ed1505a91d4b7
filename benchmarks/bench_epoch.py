"""Seconds per training epoch: the seed's style of data pipeline against the project's, side by side.

    python benchmarks/bench_epoch.py            # full epochs (12,000 pairs + 4,000 test pairs), ~4 min
    python benchmarks/bench_epoch.py --quick    # a few hundred pairs, scaled to an epoch, < 1 min

One process, same model, pairs and seed for both pipelines, timed alternately (a, b, a, b, …)
after a warm-up so that drift hits both; the median is reported. Also the compute floor:
forward+backward+step alone on one fixed batch, and the FLOP rate it reaches.
(a) seed style: a pair Dataset with per-sample torchvision v2 transforms (random affine +
    random blur) in a DataLoader (workers = CPU count, pinned memory, prefetch,
    non_blocking copies), fp32 on the CPU, test pairs encoded pair by pair.
(b) project: `mnist_pairs.train` as `fit` runs it — data resident on the device, batched
    tensor augmentation, channels_last, bf16 autocast where the CPU has native bf16, test
    images embedded once.
The last line printed is one JSON object; `--out FILE` also writes it (and a Chinese table).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from mnist_pairs import data as D
from mnist_pairs import train as T
from mnist_pairs.config import Config
from mnist_pairs.models import build_model


class SeedPairDataset(Dataset):
    """Pairs given by index arrays; each image transformed on its own, as the seed did."""

    def __init__(self, images_u8: torch.Tensor, a, b, y, train: bool, cfg: Config):
        self.images, self.a, self.b, self.y = images_u8, a, b, y
        base = [v2.ToDtype(torch.float32, scale=True)]
        aug = [v2.RandomAffine(degrees=cfg.aug_degrees, translate=(cfg.aug_translate, cfg.aug_translate),
                               scale=(cfg.aug_scale_min, cfg.aug_scale_max)),
               v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, cfg.aug_blur_sigma_max))], p=cfg.aug_blur_prob)]
        self.tf = v2.Compose((aug if train else []) + base + [v2.Normalize([D.MNIST_MEAN], [D.MNIST_STD])])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.tf(self.images[self.a[i]]), self.tf(self.images[self.b[i]]), self.y[i]


def seed_worker(worker_id: int) -> None:  # the seed seeded its workers; so do we
    torch.manual_seed(torch.initial_seed() % 2**31 + worker_id)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_style_epoch(model, opt, cfg, sub, epoch, test_pairs, max_pairs=None, device=torch.device("cpu")) -> float:
    t0 = time.perf_counter()
    a, b, y = D.train_pairs(sub.train_labels, cfg.train_pairs, cfg.seed, epoch)
    if max_pairs:
        a, b, y = a[:max_pairs], b[:max_pairs], y[:max_pairs]
    imgs = (sub.train_images * 255).round().to(torch.uint8)  # (N,1,28,28) uint8, as PIL/ToTensor saw them
    workers = os.cpu_count() or 1
    loader = DataLoader(SeedPairDataset(imgs, a, b, y, True, cfg), batch_size=cfg.batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda", prefetch_factor=2,
                        worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(epoch))
    model.train()
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    for xa, xb, yy in loader:
        xa, xb, yy = xa.to(device, non_blocking=True), xb.to(device, non_blocking=True), yy.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):  # the seed: AMP on CUDA only
            logits = model(xa, xb)
        loss = F.binary_cross_entropy_with_logits(logits.float(), yy)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    ta, tb, ty = test_pairs
    if max_pairs:
        ta, tb, ty = ta[: max_pairs // 3], tb[: max_pairs // 3], ty[: max_pairs // 3]
    timgs = (sub.test_images * 255).round().to(torch.uint8)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for xa, xb, _ in DataLoader(SeedPairDataset(timgs, ta, tb, ty, False, cfg), batch_size=cfg.batch_size,
                                    num_workers=workers, pin_memory=device.type == "cuda"):
            model(xa.to(device, non_blocking=True), xb.to(device, non_blocking=True))
    _sync(device)
    return time.perf_counter() - t0


def project_epoch(model, opt, scaler, cfg, data: T.PairData, epoch, dtype, max_pairs=None,
                  device=torch.device("cpu")) -> float:
    t0 = time.perf_counter()
    c = cfg if not max_pairs else cfg.replace(train_pairs=max_pairs)
    T.train_one_epoch(model, opt, scaler, data, c, epoch, device, dtype)
    if max_pairs:  # evaluate a third as many test pairs, in proportion to a full epoch
        keep = max_pairs // 3
        data = copy.copy(data)
        data.test_a, data.test_b, data.test_y = data.test_a[:keep], data.test_b[:keep], data.test_y[:keep]
    T.evaluate(model, data, c, device, dtype)
    _sync(device)
    return time.perf_counter() - t0


def compute_floor(cfg: Config, dtype, reps: int, device=torch.device("cpu")) -> tuple[float, float]:
    """(seconds per fwd+bwd+step on one batch, FLOPs of that step) with the project's settings."""
    torch.manual_seed(0)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_model(cfg.model).to(device, memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    xa = torch.randn(cfg.batch_size, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    xb = torch.randn(cfg.batch_size, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(cfg.batch_size, device=device) > 0.5).float()

    def step():
        with T._autocast(device, dtype):
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


def run(quick: bool, rounds: int, device_name: str = "cpu") -> dict:
    cfg = Config(device=device_name)
    torch.manual_seed(cfg.seed)
    device = T.resolve_device(cfg)
    T.setup_backend(cfg, device)
    dtype = T.autocast_dtype(cfg, device)
    data = T.PairData(cfg, device)
    sub = data.subset
    max_pairs = 768 if quick else None
    scale = cfg.train_pairs / max_pairs if quick else 1.0
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format

    seed_model = build_model(cfg.model).to(device)
    seed_opt = torch.optim.AdamW(seed_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    proj_model = build_model(cfg.model).to(device, memory_format=fmt)
    proj_opt = torch.optim.AdamW(proj_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    fp32_model = build_model(cfg.model).to(device, memory_format=fmt)
    fp32_opt = torch.optim.AdamW(fp32_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    test = (data.test_a, data.test_b, data.test_y)

    warm = 256
    no_scaler = torch.amp.GradScaler(device.type, enabled=False)
    seed_style_epoch(seed_model, seed_opt, cfg, sub, 1, test, max_pairs=warm, device=device)
    project_epoch(proj_model, proj_opt, scaler, cfg, data, 1, dtype, max_pairs=warm, device=device)
    project_epoch(fp32_model, fp32_opt, no_scaler, cfg, data, 1, None, max_pairs=warm, device=device)
    times = {"seed": [], "project": [], "project_fp32": []}
    for r in range(rounds):
        epoch = 2 + r
        times["seed"].append(seed_style_epoch(seed_model, seed_opt, cfg, sub, epoch, test, max_pairs, device) * scale)
        times["project"].append(project_epoch(proj_model, proj_opt, scaler, cfg, data, epoch, dtype, max_pairs,
                                              device) * scale)
        times["project_fp32"].append(project_epoch(fp32_model, fp32_opt, no_scaler, cfg, data, epoch, None,
                                                   max_pairs, device) * scale)
        print(f"round {r + 1}/{rounds}: " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)

    step_s, step_flops = compute_floor(cfg, dtype, reps=10 if quick else 30, device=device)
    steps = -(-cfg.train_pairs // cfg.batch_size)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # this process (project pipeline)
    rss_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest DataLoader worker
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seed_style_s_per_epoch": round(med["seed"], 3), "project_s_per_epoch": round(med["project"], 3),
            "project_fp32_s_per_epoch": round(med["project_fp32"], 3),
            "speedup": round(med["seed"] / med["project"], 3),
            "compute_only_s_per_epoch": round(step_s * steps, 3),
            "gflops_achieved": round(step_flops / step_s / 1e9, 1),
            "flop_per_epoch_T": round(step_flops * steps / 1e12, 3),
            "peak_rss_mb": round(rss, 1), "peak_rss_worker_mb": round(rss_workers, 1), "quick": quick, "rounds": rounds,
            "autocast": str(dtype).replace("torch.", "") if dtype else "off",
            "cpu": T.environment(device)["cpu"], "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def table_zh(r: dict) -> str:
    return "\n".join([
        f"本机：{r['cpu']}，torch 线程 {r['threads']}，torch {r['torch']}；"
        f"{'快速模式（按比例折算为整轮）' if r['quick'] else '整轮'}，{r['rounds']} 轮交替计时取中位数。\n",
        "| 管线 | 秒/轮（训练 12,000 对 + 评估 4,000 对） | 相对种子式 |",
        "| --- | ---: | ---: |",
        f"| 种子式：逐样本 torchvision v2 变换 + DataLoader（{os.cpu_count()} workers），fp32 | "
        f"{r['seed_style_s_per_epoch']:.2f} | 1.00× |",
        f"| 本项目，fp32（整批张量增强、channels_last、嵌入缓存评估） | {r['project_fp32_s_per_epoch']:.2f} | "
        f"{r['seed_style_s_per_epoch'] / r['project_fp32_s_per_epoch']:.2f}× |",
        f"| 本项目，默认（另加 {r['autocast']} autocast） | {r['project_s_per_epoch']:.2f} | {r['speedup']:.2f}× |",
        f"| 纯计算下限（固定批次前向+反向+更新 × 每轮步数） | {r['compute_only_s_per_epoch']:.2f} | — |",
        "",
        f"纯计算达到 {r['gflops_achieved']} GFLOP/s（每轮约 {r['flop_per_epoch_T']} TFLOP）；主进程峰值常驻内存 {r['peak_rss_mb']:.0f} MB（种子式 DataLoader 单个 worker 峰值 {r['peak_rss_worker_mb']:.0f} MB）。",
        "命令：`python benchmarks/bench_epoch.py --out reports/benchmarks/bench_epoch.json`",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few hundred pairs per timing, scaled to a full epoch")
    p.add_argument("--rounds", type=int, default=None, help="alternating timing rounds (default 3, quick 3)")
    p.add_argument("--out", default=None, help="also write the JSON (with a Chinese table) to this file")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    r = run(args.quick, args.rounds or 3, args.device)
    print(table_zh(r))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**r, "table_zh": table_zh(r)}, ensure_ascii=False, indent=1))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
