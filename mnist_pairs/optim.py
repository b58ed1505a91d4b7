"""Optimisation from the config: the optimizer, the LR schedule and an optional weight EMA.

    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg)            # None for a constant LR
    step_schedule(sched, selection_loss)       # once per epoch, after scoring
    ema = make_ema(model, cfg)                 # None unless cfg.ema > 0; ema.module is what is scored
    value = optimizer_step(loss, opt, scaler, epoch, batch)   # every training step, both pairings

The seed's choice is AdamW with ReduceLROnPlateau on the selection loss. The other choices are
levers and ablations of issue 9: Adam, a constant LR, a cosine decay over the run's epochs, and an
exponential moving average of the weights and BatchNorm statistics, updated after every step.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import Config
from .errors import TrainingDiverged


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler, epoch: int, batch: int) -> float:
    """One (scaled) step on `loss`; returns its value. A non-finite loss stops the run before the
    step, so the weights stay those of last.pt's epoch."""
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(f"training loss became {value} at epoch {epoch}, batch {batch}; "
                               f"last.pt keeps epoch {epoch - 1}. Try a lower lr or precision=fp32.")
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return value


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_schedule(opt: torch.optim.Optimizer, cfg: Config):
    if cfg.lr_schedule == "plateau":
        return ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.lr_min)
    if cfg.lr_schedule == "cosine":
        return CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr_min)
    return None


def restore_schedule(sched, state: dict, cfg: Config) -> None:
    """Resume a schedule from last.pt. A cosine decay follows the resumed run's `epochs`: a run
    resumed with more epochs decays over the new horizon instead of climbing back towards lr."""
    sched.load_state_dict(state)
    if isinstance(sched, CosineAnnealingLR):
        sched.T_max = cfg.epochs


def step_schedule(sched, selection_loss: float) -> None:
    if isinstance(sched, ReduceLROnPlateau):
        sched.step(selection_loss)
    elif sched is not None:
        sched.step()


def make_ema(model: torch.nn.Module, cfg: Config) -> AveragedModel | None:
    if not cfg.ema:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
