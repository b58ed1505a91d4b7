"""Data-parallel training on the CPU with 2 gloo ranks (distributed.py): disjoint shards of the
same epoch, replicas identical after every step, only rank 0 writes, and 2 x 128 ≈ 1 x 256."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mnist_pairs import train as T
from mnist_pairs.config import Config
from mnist_pairs.accel.distributed import Dist
from mnist_pairs.errors import ConfigError

# dropout off: with it, the ranks' masks differ from one process's; BatchNorm is what remains
SMALL = dict(epochs=1, train_pairs=2048, batch_size=256, test_pairs=200, val_pairs=200, val_images=200,
             heldout_pairs=0, precision="fp32", dropout=False, num_threads=1)
# A step of 2 x 128 pairs and one of 256 pairs see the same pairs and the same mean-loss gradient;
# they differ only in BatchNorm: each rank normalises its 256 images (128 pairs), one process all 512.
# After 8 AdamW steps the relative L2 difference of the weights was 1.95e-2 (for scale: lr x 1.01
# gives 0.8e-2, bf16 instead of fp32 1.6e-2, one process with batch 128 6.5e-2). The tolerance is
# relative to that last one, measured in the test: DDP must be at most half as far.
REL_TOLERANCE = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_are_disjoint_and_cover_the_batch():
    for n in (256, 224, 7, 2):
        parts = [Dist(r, 2).shard(1000, 1000 + n) for r in range(2)]
        assert parts[0][0] == 1000 and parts[0][1] == parts[1][0] and parts[1][1] == 1000 + n
        assert abs((parts[0][1] - parts[0][0]) - (parts[1][1] - parts[1][0])) <= 1
    assert Dist().shard(5, 9) == (5, 9)


def test_a_batch_that_leaves_a_rank_empty_is_refused_before_training():
    Dist(0, 3).check_batches(12000, 256)          # last batch 224: every rank gets pairs
    Dist().check_batches(12001, 256)              # one process: any batch will do
    with pytest.raises(ConfigError, match="batch of 2 pairs leaves rank 2 of 3 without pairs"):
        Dist(1, 3).check_batches(12000, 2)
    with pytest.raises(ConfigError, match="batch of 1 pairs leaves rank 1 of 2"):
        Dist(0, 2).check_batches(257, 256)        # the epoch's last batch
    with pytest.raises(ConfigError, match="batch of 5 pairs leaves rank 3 of 4"):
        Dist(0, 4).check_batches(40, 5)           # slices of 2, 2, 1 and none
    assert all(hi > lo for lo, hi in (Dist(r, 4).shard(0, 7) for r in range(4)))
    Dist(0, 4).check_batches(70, 7)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _worker(rank: int, world: int, port: int, out_dir: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    steps, worst = 0, 0.0

    def check(model):
        nonlocal steps, worst
        mine = _flat(model)
        every = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(every, mine)
        worst = max(worst, max(float((t - mine).abs().max()) for t in every))
        steps += 1

    run = T.fit(Config(out_dir=out_dir, run_name="ddp", **SMALL), log=lambda m: None, on_step=check)
    if rank == 0:
        torch.save({"params": _flat(run.model()), "steps": steps, "worst": worst,
                    "history": run.records, "env": run.env}, result)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path):
    result = str(tmp_path / "ddp.pt")
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "ddp_runs"), result), nprocs=2,
                       start_method="spawn")
    got = torch.load(result, weights_only=False)
    assert got["steps"] == 2048 // 256 and got["worst"] == 0.0        # replicas identical after every step
    assert got["env"]["world_size"] == 2 and got["env"]["backend"] == "gloo"
    assert sorted(p.name for p in (tmp_path / "ddp_runs").iterdir()) == ["ddp", "latest_run.txt"]

    one = T.fit(Config(out_dir=str(tmp_path / "one"), run_name="one", **SMALL), log=lambda m: None)
    half = T.fit(Config(out_dir=str(tmp_path / "one"), run_name="half", **{**SMALL, "batch_size": 128}),
                 log=lambda m: None)
    ref = _flat(one.model())
    rel = float((got["params"] - ref).norm() / ref.norm())
    rel_half = float((_flat(half.model()) - ref).norm() / ref.norm())
    print(f"relative weight difference to 1 x 256 after {got['steps']} steps: 2 x 128 DDP {rel:.2e}, "
          f"1 x 128 {rel_half:.2e}")
    assert rel < REL_TOLERANCE * rel_half, (rel, rel_half)
    assert got["history"][0]["train_loss"] == pytest.approx(one.records[0]["train_loss"], abs=0.01)
    assert got["history"][0]["val_acc"] == pytest.approx(one.records[0]["val_acc"], abs=0.05)


@pytest.mark.slow
def test_torchrun_cli_writes_one_run_folder(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mnist_pairs",
           "train", "--params", "params/smoke.yaml", "--set", "epochs=1", "--set", "train_pairs=512",
           "--set", "test_pairs=200", "--set", "val_pairs=200", "--set", "val_images=200", "--set", "heldout_pairs=400",
           "--set", f"out_dir={tmp_path}", "--set", "run_name=r"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "r"
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    assert len(json.loads((run / "history.json").read_text())) == 1
    assert (run / "results.json").is_file() and proc.stdout.count("epoch   1/1") == 1   # rank 0 logs alone
