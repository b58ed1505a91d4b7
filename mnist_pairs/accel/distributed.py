"""Data-parallel training under torchrun: one process per rank, gloo on CPUs, nccl on GPUs.

    torchrun --nproc-per-node=2 -m mnist_pairs train --params params/seed_siamese.yaml

Every rank draws the same epoch's pairs and augmentation from the same (seed, epoch) keys and
takes its own contiguous slice of each global batch of `batch_size` pairs, so the union of the
slices is the single-process epoch, and DDP's gradient average is the gradient of the whole
batch's mean loss when the slices are equal (a batch divisible by the rank count; a short last
batch split unevenly weights its slices equally; a batch that would leave a rank without pairs is
refused before training, `Dist.check_batches`). One thing differs from one process: BatchNorm normalises each rank's slice
with that slice's statistics (SyncBatchNorm needs CUDA), and the running statistics are rank
0's (DDP broadcasts buffers from rank 0 before each forward). Dropout masks differ as well.

Rank 0 alone scores the evaluation pairs, decides the LR schedule and the best checkpoint, and
writes the run folder; the others receive what they need by broadcast. Without torchrun
(WORLD_SIZE unset or 1) nothing here changes a run.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    backend: str = ""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, i: int, j: int) -> tuple[int, int]:
        """This rank's slice [lo, hi) of the global batch [i, j): contiguous, disjoint, covering."""
        per = math.ceil((j - i) / self.world)
        lo = min(j, i + self.rank * per)
        return lo, min(j, lo + per)

    def check_batches(self, n: int, batch_size: int) -> None:
        """Every rank needs a pair of every global batch: an empty slice has no mean loss (NaN)."""
        for size in {batch_size, n % batch_size or batch_size}:
            lo, hi = Dist(self.world - 1, self.world).shard(0, size)   # the last rank's slice is the emptiest
            if self.active and hi <= lo:
                raise ConfigError(f"a batch of {size} pairs leaves rank {self.world - 1} of {self.world} without "
                                  f"pairs (epoch of {n} pairs in batches of {batch_size}); change batch_size or "
                                  "train_pairs")

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (a picklable value)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks."""
        if not self.active:
            return list(values)
        device = "cuda" if self.backend == "nccl" else "cpu"  # nccl reduces CUDA tensors only
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def facts(self) -> dict:
        return {"world_size": self.world, "backend": self.backend} if self.active else {}


def init(device: torch.device) -> Dist:
    """The process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR…), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), backend)


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """The model DDP trains (gradients averaged over ranks); `model` itself stays the one
    that is evaluated and saved (same state_dict keys)."""
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)
