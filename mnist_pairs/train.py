"""The training loop: one AMP code path for CPU and GPU, runs as folders, resumable.

    run = fit(load_config("params/seed_siamese.yaml"))     # -> Run (runs.py)
    run = fit(resume="experiments/siamese_20261127_101500")   # continue a killed run

Each epoch draws fresh pairs, augments whole batches on the device, trains, and scores the
fixed evaluation pairs: the selection pairs ("val" under the validation protocol, "test"
under the seed's) drive the LR schedule and best.pt. At the end the selected and the final
model are scored once on every pair set; scores.npz and results.json hold the outcome.
`fit` trains and writes the run; it draws no figures.
"""
from __future__ import annotations

import io
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import augment
from .accel import distributed
from .accel import fused
from . import hardware
from . import openset
from . import optim
from .config import Config
from .data import PairSet, RunData, data_source, load_data, train_pairs
from .errors import ConfigError, TrainingDiverged
from .metrics import pair_metrics, results
from .models import build_model, count_parameters, score_pairs
from .paths import atomic_write_bytes, atomic_write_text
from .runs import (LATEST_POINTER, RUN_WEIGHTS, Run, check_numeric_path, load_checkpoint, open_run_dir, prepare_run,
                   record_digests, save_checkpoint, write_json)
from .shared_encoding import shared_batches, supcon_loss
from .tboard import TensorBoardLog

EPOCH_SETS = ("val", "test")  # scored every epoch; "heldout" and "confirm" only once, at the end


def pair_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce_logits") -> torch.Tensor:
    """The training objective: BCE on logits, or ("bce_sigmoid", the seed's first version)
    plain BCE on sigmoid outputs. Evaluation computes its loss in metrics.py."""
    if kind == "bce_sigmoid":
        return F.binary_cross_entropy(torch.sigmoid(logits), target)
    return F.binary_cross_entropy_with_logits(logits, target)


class DeviceData:
    """A run's data on the training device: raw training images, normalised evaluation images."""

    def __init__(self, data: RunData, cfg: Config, device: torch.device):
        self.cpu = data
        self.train_images = data.train_images.to(device)      # (N,1,28,28) in [0,1]
        self.train_labels = data.train_labels                  # CPU: pairs are drawn there
        fmt = hardware.memory_format(cfg)
        self.eval_images = {k: augment.normalize(s.images).to(device).contiguous(memory_format=fmt)
                            for k, s in data.sets.items()}


def _progress_is_interactive() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _independent_batches(data: DeviceData, cfg: Config, epoch: int, device, d: distributed.Dist):
    """The seed's batches for train_step: (images x, None, target y, None), x holding side a of
    this rank's slice of each global batch, then side b; each image augmented on its own."""
    a, b, y = train_pairs(data.train_labels, cfg.train_pairs, cfg.seed, epoch, cfg.pair_sampling)
    n = len(y)
    aug = augment.draw_aug(2 * n, cfg, augment.aug_generator(cfg.seed, epoch)).to(device) if cfg.augment else None
    a, b, y = a.to(device), b.to(device), y.to(device)
    fmt = hardware.memory_format(cfg)
    for i in range(0, n, cfg.batch_size):
        lo, hi = d.shard(i, min(i + cfg.batch_size, n))  # the whole batch [i, j) in one process
        # both sides of the batch augmented in one call: rows [lo, hi) of a, then of b
        x = augment.augment_pair_batch(data.train_images, a, b, aug, lo, hi) if aug else \
            data.train_images[torch.cat([a[lo:hi], b[lo:hi]])]
        yield augment.normalize(x).contiguous(memory_format=fmt), None, y[lo:hi], None


def train_step(model, x: torch.Tensor, pairs, y: torch.Tensor, labels, opt, scaler, cfg: Config,
               device, precision: str, epoch: int, batch: int) -> tuple[float, int]:
    """One optimiser step, both pairings: (loss value, correct pairs). `pairs` None: x is side a
    then side b of len(y) pairs (the seed's); else (ia, ib) index pairs among x's embeddings,
    each image encoded once, with the SupCon term on the images' digit `labels` when configured."""
    with hardware.autocast(device, precision):
        if pairs is None:
            logits = model(x[: len(y)], x[len(y):])
        else:
            e = model.embed(x)
            # index_select, not e[ia]: the backward of advanced indexing (index_put_ with accumulate)
            # adds rows in a thread-dependent order on the CPU, so runs would not repeat bit for bit
            logits = model.compare_embeddings(e.index_select(0, pairs[0]), e.index_select(0, pairs[1]))
    loss = pair_loss(logits.float(), y, cfg.loss)
    if pairs is not None and cfg.supcon_weight:
        loss = loss + cfg.supcon_weight * supcon_loss(e, labels, cfg.supcon_temperature)
    value = optim.optimizer_step(loss, opt, scaler, epoch, batch)
    return value, int(((logits.detach() > 0).float() == y).sum())


def train_one_epoch(model, opt, scaler, data: DeviceData, cfg: Config, epoch: int,
                    device: torch.device, precision: str, d: distributed.Dist = distributed.Dist(),
                    on_step=None) -> dict[str, float]:
    """One pass over the epoch's training batches (fresh pairs, augmented in whole batches on
    `device`). Under torchrun each rank trains its slice of every global batch (distributed.py)."""
    model.train()
    shared = cfg.pairing == "shared"
    batches = shared_batches(data, cfg, epoch, device) if shared else _independent_batches(data, cfg, epoch, device, d)
    n_batches = -(-(len(data.train_labels) if shared else cfg.train_pairs) // cfg.batch_size)
    loss_sum, correct, pairs = 0.0, 0, 0
    bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}", leave=False, unit="batch",
               disable=not (_progress_is_interactive() and d.main))
    for step, (x, index_pairs, y, labels) in enumerate(bar):
        value, right = train_step(model, x, index_pairs, y, labels, opt, scaler, cfg, device, precision, epoch, step)
        loss_sum += value * len(y)
        correct += right
        pairs += len(y)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        if on_step:
            on_step(model)
    loss_sum, correct, pairs = d.sum(loss_sum, correct, pairs)
    out = {"train_loss": loss_sum / max(pairs, 1), "train_acc": correct / max(pairs, 1)}
    return out | {"train_pairs": pairs} if shared else out


def score(model, images: torch.Tensor, pairs: PairSet, cfg: Config, device, precision: str) -> torch.Tensor:
    """Logits (CPU, float32) of `model` in eval mode on fixed pairs; non-finite logits stop the run."""
    model.eval()
    with torch.no_grad(), hardware.autocast(device, precision):
        logits = score_pairs(model, images, pairs.a, pairs.b, cfg.eval_batch_size)
    logits = logits.float().cpu()
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).sum())
        raise TrainingDiverged(f"evaluation gave {bad} non-finite logits of {len(logits)}: the model diverged; "
                               "last.pt keeps the previous epoch. Try a lower lr or precision=fp32.")
    return logits


def evaluate(model, data: DeviceData, cfg: Config, device, precision: str, names=EPOCH_SETS) -> dict:
    """{"<set>_loss"/"_acc"/"_auc": …} for each pair set in `names` that this run has."""
    out = {}
    for name in (n for n in names if n in data.cpu.sets):
        m = pair_metrics(score(model, data.eval_images[name], data.cpu.sets[name], cfg, device, precision),
                         data.cpu.sets[name].y)
        out.update({f"{name}_loss": m["loss"], f"{name}_acc": m["acc"], f"{name}_auc": m["auc"]})
    return out


# --------------------------------------------------------------------------- fit

def new_model(cfg: Config) -> torch.nn.Module:
    """The model a new run of `cfg` starts from, on the CPU: the global RNG is seeded with cfg.seed,
    then the model is built (init and dropout are the global RNG's only users)."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, dropout=cfg.dropout, fused=cfg.fused_blocks)


def _check_given(cfg: Config, data: RunData | None, model, fresh) -> None:
    """fit's `data` must be load_data(cfg)'s and its `model` new_model(cfg)'s, untrained."""
    if data is not None and data.source != data_source(cfg):
        diff = sorted(k for k, v in data_source(cfg).items() if data.source.get(k) != v)
        raise ConfigError(f"fit: the data given was loaded for another config (differs in {diff}); pass load_data(cfg)")
    init = fresh.state_dict()
    if model is not None and not (type(model) is type(fresh) and getattr(model, "fused", None) == fresh.fused and all(
            torch.equal(v, init[k]) for k, v in model.state_dict().items())):
        raise ConfigError(f"fit: the model given is not new_model(cfg) as built ({cfg.model}, fused={cfg.fused_blocks}, "
                          f"seed {cfg.seed}, untrained); to continue a run use fit(resume=run_dir)")


def _after_step(model, ema, on_step):
    """What runs after every optimiser step: the EMA update of the weights, then `on_step`."""
    if ema is None:
        return on_step

    def after(m):
        ema.update_parameters(model)
        if on_step:
            on_step(m)
    return after


def fit(cfg: Config | None = None, data: RunData | None = None, model=None, resume=None,
        overrides: dict | None = None, log=print, on_step=None, resume_anyway: bool = False) -> Run:
    """Train as configured (or continue `resume`'s run) and return the finished Run.
    `data`: load_data(cfg), when the caller has it already (else fit loads it). `model`:
    new_model(cfg), when the caller wants to hold the very model that trains (else fit builds it).
    `on_step(model)` runs after every optimiser step (for instrumentation). A resume under another
    numeric path than last.pt's (threads, precision, CPU kernels) is refused unless `resume_anyway`."""
    cfg, run_dir, state = prepare_run(cfg, resume, overrides)
    device = hardware.resolve_device(cfg)
    d = distributed.init(device)
    if d.active and cfg.pairing == "shared":
        raise ConfigError("pairing 'shared' trains in one process; run it without torchrun")
    d.check_batches(cfg.train_pairs, cfg.batch_size)
    log = log if d.main else (lambda m: None)
    precision = hardware.resolve_precision(cfg, device)
    cfg = cfg.replace(device=device.type, precision=precision)  # what config.yaml records
    if cfg.fused_blocks:
        fused.require(device, precision)  # builds the kernel, or stops here with what to change
    hardware.setup_backend(cfg, device)
    path = hardware.numeric_path(device, precision)
    changed = check_numeric_path(state, path, run_dir, resume_anyway) if state else {}
    fresh = new_model(cfg)  # also leaves the global RNG where this run's dropout starts
    _check_given(cfg, data, None if state else model, fresh)
    data = DeviceData(data if data is not None else load_data(cfg, log), cfg, device)
    env = {**hardware.environment(device, precision), **d.facts()} | (
        {"numeric_path_changed": changed} if changed else {})
    run_dir = d.broadcast(open_run_dir(cfg, run_dir, state, data.cpu.subset.index_sha256, env) if d.main else None)

    model = (fresh if model is None else model).to(device, memory_format=hardware.memory_format(cfg))
    opt, ema = optim.make_optimizer(model, cfg), optim.make_ema(model, cfg)
    sched = optim.make_schedule(opt, cfg)
    scored = ema.module if ema else model  # the weights scored each epoch, selected and saved in best.pt
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    history: list[dict] = []
    best, start = -1.0, 1
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched:
            optim.restore_schedule(sched, state["scheduler"], cfg)
        scaler.load_state_dict(state["scaler"])
        if ema:
            ema.load_state_dict(state["ema"])
        history, best, start = state["history"], state["best_score"], state["epoch"] + 1
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        log(f"resuming {run_dir.name} at epoch {start}/{cfg.epochs}")

    on_step = _after_step(model, ema, on_step)
    step_model = distributed.wrap(model, d)
    step_model = torch.compile(step_model) if cfg.compile else step_model
    tb = TensorBoardLog(run_dir) if cfg.tensorboard and d.main else None
    sel = data.cpu.selection
    log(f"run {run_dir}  model={cfg.model} ({count_parameters(model):,} params)  device={device}  "
        f"precision={precision}  protocol={cfg.protocol} (selects on {sel})  epochs {start}..{cfg.epochs}")
    interactive = _progress_is_interactive() and d.main
    bar = tqdm(range(start, cfg.epochs + 1), desc="epochs", unit="epoch", initial=start - 1,
               total=cfg.epochs, disable=not interactive)
    for epoch in bar:
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        tr = train_one_epoch(step_model, opt, scaler, data, cfg, epoch, device, precision, d, on_step)
        ev = d.broadcast(evaluate(scored, data, cfg, device, precision) if d.main else None)  # rank 0 scores
        optim.step_schedule(sched, ev[f"{sel}_loss"])
        record = {"epoch": epoch, **tr, **ev, "lr": lr, "seconds": time.perf_counter() - t0}
        history.append(record)
        improved = epoch == cfg.epochs if cfg.checkpoint == "final" else ev[f"{sel}_acc"] > best
        best = max(best, ev[f"{sel}_acc"])
        if not d.main:
            continue
        if improved:
            save_checkpoint({"model": scored.state_dict(), "model_name": cfg.model, "epoch": epoch, **ev},
                            run_dir / "best.pt")
        save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict() if sched else None, "scaler": scaler.state_dict(),
                         "ema": ema.state_dict() if ema else None, "epoch": epoch,
                         "best_score": best, "history": history, "rng_cpu": torch.get_rng_state(), "numeric_path": path,
                         "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                        run_dir / "last.pt")
        write_json(run_dir / "history.json", history)
        if tb:
            tb.epoch(record)
        line = f"epoch {epoch:3d}/{cfg.epochs}  train loss {tr['train_loss']:.4f} acc {tr['train_acc']:.4f}  " + \
            "  ".join(f"{k} loss {ev[k + '_loss']:.4f} acc {ev[k + '_acc']:.4f}"
                      for k in EPOCH_SETS if k + "_acc" in ev) + f"  lr {lr:.2e}  {record['seconds']:.1f}s"
        if interactive:
            bar.set_postfix({f"{sel}_acc": f"{ev[sel + '_acc']:.4f}", "best": f"{best:.4f}"})
            tqdm.write(line)
        else:
            log(line)
    bar.close()
    if d.main:
        run = finish(run_dir, scored, data, cfg, device, precision, history)
        if tb:
            tb.finish(run, data.cpu)
        atomic_write_text(cfg.out_path / LATEST_POINTER, str(run_dir) + "\n")
    d.barrier()  # the other ranks return once rank 0 has written everything
    return Run(run_dir)


def finish(run_dir, final_model, data: DeviceData, cfg: Config, device, precision: str, history: list[dict]) -> Run:
    """Score the selected (best.pt) and the final model once on every pair set; write
    scores.npz and results.json. The threshold is chosen on the selection pairs only."""
    fmt = hardware.memory_format(cfg)
    best_ckpt = load_checkpoint(run_dir / "best.pt", map_location=device)
    selected = build_model(cfg.model).to(device, memory_format=fmt)
    selected.load_state_dict(best_ckpt["model"])
    logits = {}
    for tag, model in (("best", selected), ("final", final_model)):
        for name, pairs in data.cpu.sets.items():
            logits[f"{tag}_{name}"] = score(model, data.eval_images[name], pairs, cfg, device, precision).numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, **logits)
    atomic_write_bytes(run_dir / "scores.npz", buf.getvalue())
    res = results(logits, data.cpu, cfg, history, best_ckpt["epoch"])
    if cfg.heldout_pairs and hasattr(selected, "embed"):  # open set and one-shot: cheap with embeddings
        sub = data.cpu.subset
        res["openset"] = openset.evaluate(selected, sub.heldout_images, sub.heldout_labels, cfg, device, precision,
                                          res["threshold"])
    write_json(run_dir / "results.json", res)
    record_digests(run_dir, RUN_WEIGHTS)
    return Run(run_dir)
