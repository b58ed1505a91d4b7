"""The training loop: one AMP code path for CPU and GPU, runs as folders, resumable.

    run_dir = fit(load_config("params/seed_siamese.yaml"))
    run_dir = fit(resume=run_dir)          # continue a killed run from last.pt

A run folder `experiments/<model>_<YYYYmmdd_HHMMSS>/` holds config.yaml, history.json,
best.pt (best test accuracy, as the seed selects), last.pt (everything needed to resume),
env.json and figures/. Every file is written atomically.
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data as D
from .config import Config, ConfigError, load_config
from .metrics import confusion, pair_metrics
from .models import build_model, count_parameters, score_pairs
from .paths import PROJECT_ROOT, atomic_write_bytes, atomic_write_text, resolve


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; last.pt still holds the last good epoch."""


# --------------------------------------------------------------------------- device & AMP

def resolve_device(cfg: Config) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available here")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def setup_backend(cfg: Config, device: torch.device) -> None:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("medium")


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None when autocast is off (CPU unless amp_cpu)."""
    if not cfg.amp or (device.type == "cpu" and not (cfg.amp_cpu and cpu_has_native_bf16())):
        return None
    if device.type == "cpu":
        return torch.bfloat16  # CPU autocast has no float16 fast path
    return getattr(torch, cfg.amp_dtype)


def cpu_has_native_bf16() -> bool:
    """oneDNN runs bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _memory_format(cfg: Config):
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


# --------------------------------------------------------------------------- data on device

class PairData:
    """The fixed subset on the training device, with the pairs that evaluation scores.

    By default evaluation uses the saved test pairs, as the seed does. With
    `cfg.val_images > 0`, that many training images (chosen by the seed) are held out and
    evaluation uses pairs drawn among them instead: a validation set for choosing settings
    without looking at the test pairs.
    """

    def __init__(self, cfg: Config, device: torch.device):
        subset = D.load_subset(cfg.subset_fraction, cfg.seed, cfg.data_root or None)
        self.subset = subset
        train_x, train_y = subset.train_images, subset.train_labels
        if cfg.val_images:
            keep, held = D.holdout(train_y, cfg.val_images, cfg.seed)
            self.eval_images_raw, self.eval_labels = train_x[held], train_y[held]
            train_x, train_y = train_x[keep], train_y[keep]
            self.test_a, self.test_b, self.test_y = D.validation_pairs(self.eval_labels, cfg.test_pairs, cfg.seed)
        else:
            self.eval_images_raw, self.eval_labels = subset.test_images, subset.test_labels
            self.test_a, self.test_b, self.test_y = D.test_pairs(
                subset.test_labels, cfg.test_pairs, cfg.seed, cfg.data_root or None, cfg.subset_fraction)
        self.train_images = train_x.to(device)                       # (N,1,28,28) in [0,1]
        self.train_labels = train_y                                  # CPU: pairs are drawn there
        fmt = _memory_format(cfg)
        self.test_images = D.normalize(self.eval_images_raw).to(device).contiguous(memory_format=fmt)


# --------------------------------------------------------------------------- one epoch

def _progress_is_interactive() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def train_one_epoch(model, opt, scaler, data: PairData, cfg: Config, epoch: int,
                    device: torch.device, dtype, desc: str = "") -> dict[str, float]:
    """One pass over the epoch's fresh pairs, augmented in whole batches on `device`."""
    model.train()
    a, b, y = D.train_pairs(data.train_labels, cfg.train_pairs, cfg.seed, epoch)
    n = len(y)
    aug = D.draw_aug(2 * n, cfg, D.aug_generator(cfg.seed, epoch)).to(device)
    a, b, y = a.to(device), b.to(device), y.to(device)
    fmt = _memory_format(cfg)
    loss_sum, correct = 0.0, 0
    starts = range(0, n, cfg.batch_size)
    bar = tqdm(starts, desc=desc or f"epoch {epoch}", leave=False, unit="batch",
               disable=not _progress_is_interactive())
    for i in bar:
        j = min(i + cfg.batch_size, n)
        # both sides of the batch augmented in one call: rows [i, j) of a, then of b
        idx = torch.cat([a[i:j], b[i:j]])
        p = D.AugParams(torch.cat([aug.theta[i:j], aug.theta[n + i:n + j]]),
                        torch.cat([aug.kernel[i:j], aug.kernel[n + i:n + j]]))
        x = D.normalize(D.augment(data.train_images[idx], p)).contiguous(memory_format=fmt)
        xa, xb = x[: j - i], x[j - i:]
        with _autocast(device, dtype):
            logits = model(xa, xb)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y[i:j])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"loss became {value} at epoch {epoch}, batch {i // cfg.batch_size}; "
                                   f"last.pt keeps epoch {epoch - 1}. Try a lower lr or amp_dtype=bfloat16.")
        loss_sum += value * (j - i)
        correct += int(((logits.detach() > 0).float() == y[i:j]).sum())
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    return {"train_loss": loss_sum / n, "train_acc": correct / n}


def evaluate(model, data: PairData, cfg: Config, device: torch.device, dtype) -> tuple[dict, torch.Tensor]:
    """Metrics on the saved test pairs (no augmentation), and their logits (CPU, float32)."""
    model.eval()
    with torch.no_grad(), _autocast(device, dtype):
        logits = score_pairs(model, data.test_images, data.test_a, data.test_b, cfg.eval_batch_size)
    logits = logits.float().cpu()
    m = pair_metrics(logits, data.test_y)
    return {"test_loss": m["loss"], "test_acc": m["acc"], "test_auc": m["auc"]}, logits


# --------------------------------------------------------------------------- run folders

def new_run_dir(cfg: Config) -> Path:
    name = cfg.run_name or f"{cfg.model}_{datetime.now():%Y%m%d_%H%M%S}"
    run_dir = cfg.out_path / name
    if run_dir.exists() and cfg.run_name:
        raise FileExistsError(f"run folder {run_dir} exists: resume it or choose another run_name")
    k = 1
    while run_dir.exists():  # two runs started in the same second
        run_dir, k = cfg.out_path / f"{name}_{k}", k + 1
    run_dir.mkdir(parents=True)
    return run_dir


def latest_run(out_dir: str | os.PathLike = "experiments", with_best: bool = True) -> Path:
    """The most recently modified run folder under out_dir (that has a best.pt)."""
    runs = [p for p in resolve(out_dir).glob("*/config.yaml") if not with_best or (p.parent / "best.pt").exists()]
    if not runs:
        raise FileNotFoundError(f"no finished run under {resolve(out_dir)}: train one first (02_train.ipynb)")
    return max(runs, key=lambda p: p.parent.stat().st_mtime).parent


def save_checkpoint(obj: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_run(run_dir: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"):
    """(model in eval mode with the checkpoint's weights, config, checkpoint dict)."""
    run_dir = resolve(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    ckpt = torch.load(run_dir / f"{which}.pt", map_location=device, weights_only=True)
    model = build_model(cfg.model).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg, ckpt


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    return json.loads((resolve(run_dir) / "history.json").read_text())


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device, subset: D.Subset | None = None) -> dict:
    """Facts a reader needs to trust or reproduce a run's numbers and timings."""
    import matplotlib
    import numpy
    import sklearn
    import torchvision

    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    env = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__, "matplotlib": matplotlib.__version__,
        "git_commit": _git_commit(), "device": str(device), "cpu": cpu, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "mnist_md5": {k: v[0] for k, v in D.MNIST_FILES.items()},  # verified by ensure_mnist before use
    }
    if subset is not None:
        env["subset_index_sha256"] = subset.index_sha256
    return env


# --------------------------------------------------------------------------- fit

def fit(cfg: Config | None = None, resume: str | os.PathLike | None = None, log=print) -> Path:
    """Train as configured (or continue `resume`'s run) and return the run folder."""
    state = None
    if resume is not None:
        run_dir = resolve(resume)
        saved = load_config(run_dir / "config.yaml")
        if cfg is not None and cfg.replace(epochs=saved.epochs) != saved:
            raise ConfigError(f"resume: the config differs from {run_dir / 'config.yaml'} (only epochs may change)")
        cfg = cfg or saved
        if not (run_dir / "last.pt").is_file():
            raise FileNotFoundError(f"{run_dir} has no last.pt (it died before its first epoch ended): "
                                    "start a new run instead")
        state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
        if cfg.epochs != saved.epochs:
            atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    else:
        if cfg is None:
            raise ValueError("fit needs a config or a run folder to resume")
        run_dir = new_run_dir(cfg)
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())

    device = resolve_device(cfg)
    setup_backend(cfg, device)
    dtype = autocast_dtype(cfg, device)
    data = PairData(cfg, device)

    torch.manual_seed(cfg.seed)  # model init and dropout: the only users of the global RNG
    model = build_model(cfg.model).to(device, memory_format=_memory_format(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                       patience=cfg.lr_patience, min_lr=cfg.lr_min)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    history: list[dict] = []
    best_acc, start = -1.0, 1
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, best_acc, start = state["history"], state["best_acc"], state["epoch"] + 1
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        log(f"resuming {run_dir.name} at epoch {start}/{cfg.epochs}")

    env = environment(device, data.subset)
    env.update(model=cfg.model, parameters=count_parameters(model),
               autocast=str(dtype).replace("torch.", "") if dtype else "off", grad_scaler=scaler.is_enabled())
    atomic_write_text(run_dir / "env.json", json.dumps(env, indent=2, ensure_ascii=False))

    step_model = model
    if cfg.compile:
        t0 = time.perf_counter()
        step_model = torch.compile(model)
        log(f"torch.compile wrapped the model ({time.perf_counter() - t0:.1f} s; compiles on first batch)")

    log(f"run {run_dir}  model={cfg.model} ({count_parameters(model):,} params)  device={device}  "
        f"autocast={env['autocast']}  epochs {start}..{cfg.epochs}")
    interactive = _progress_is_interactive()
    epochs = tqdm(range(start, cfg.epochs + 1), desc="epochs", unit="epoch", initial=start - 1,
                  total=cfg.epochs, disable=not interactive)
    for epoch in epochs:
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        tr = train_one_epoch(step_model, opt, scaler, data, cfg, epoch, device, dtype)
        ev, _ = evaluate(model, data, cfg, device, dtype)
        sched.step(ev["test_loss"])
        record = {"epoch": epoch, **tr, **ev, "lr": lr, "seconds": time.perf_counter() - t0}
        history.append(record)
        if ev["test_acc"] > best_acc:
            best_acc = ev["test_acc"]
            save_checkpoint({"model": model.state_dict(), "model_name": cfg.model, "epoch": epoch,
                             "test_acc": ev["test_acc"], "test_auc": ev["test_auc"],
                             "test_loss": ev["test_loss"]}, run_dir / "best.pt")
        save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                         "best_acc": best_acc, "history": history, "rng_cpu": torch.get_rng_state(),
                         "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                        run_dir / "last.pt")
        atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1))
        line = (f"epoch {epoch:3d}/{cfg.epochs}  train loss {tr['train_loss']:.4f} acc {tr['train_acc']:.4f}  "
                f"test loss {ev['test_loss']:.4f} acc {ev['test_acc']:.4f} auc {ev['test_auc']:.4f}  "
                f"lr {lr:.2e}  {record['seconds']:.1f}s")
        if interactive:
            epochs.set_postfix(test_acc=f"{ev['test_acc']:.4f}", best=f"{best_acc:.4f}")
            tqdm.write(line)
        else:
            log(line)
    epochs.close()
    write_run_figures(run_dir, data, device, dtype, cfg)
    return run_dir


def write_run_figures(run_dir: Path, data: PairData, device, dtype, cfg: Config) -> None:
    """Curves from history.json, the best model's confusion matrix, and sample pairs."""
    from . import plots

    best, _, _ = load_run(run_dir, "best", device)
    best = best.to(memory_format=_memory_format(cfg))
    _, logits = evaluate(best, data, cfg, device, dtype)
    figs = {"curves": plots.plot_curves(read_history(run_dir)),
            "confusion_matrix": plots.plot_confusion(confusion(logits, data.test_y)),
            "sample_pairs": plots.plot_pairs(data.eval_images_raw.numpy(), data.test_a, data.test_b,
                                             data.test_y, data.eval_labels, torch.sigmoid(logits),
                                             n=10, title="测试样本对（标签与最佳模型得分）")}
    for name, fig in figs.items():
        plots.save_figure(fig, run_dir / "figures" / f"{name}.png")
