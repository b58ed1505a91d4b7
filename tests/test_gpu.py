"""CUDA-only paths: float16 autocast + GradScaler on the GPU. Skipped (never failed, never
silently passed) where CUDA is absent, as in CI."""
from __future__ import annotations

import pytest
import torch

from mnist_pairs import hardware as H
from mnist_pairs import train as T
from mnist_pairs.config import Config, ConfigError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")


@cuda
def test_cuda_run_uses_float16_autocast_and_a_stepping_grad_scaler(tmp_path, subset):
    cfg = Config(device="cuda", epochs=1, train_pairs=1024, test_pairs=400, val_pairs=400, heldout_pairs=400,
                 out_dir=str(tmp_path), run_name="gpu")
    assert H.resolve_precision(cfg, torch.device("cuda")) == "fp16"
    run = T.fit(cfg, log=lambda m: None)
    scaler = torch.load(run.dir / "last.pt", weights_only=True)["scaler"]
    # an enabled scaler that stepped: 4 steps without overflow grow its tracker; an overflow halves the scale
    assert scaler["_growth_tracker"] == 4 or scaler["scale"] < 2.0 ** 16
    assert run.cfg.precision == "fp16" and run.env["grad_scaler"] is True
    assert run.records[0]["test_acc"] > 0.5


def test_asking_for_cuda_without_it_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        H.resolve_device(Config(device="cuda"))
    with pytest.raises(ConfigError, match="fp16.*needs CUDA"):
        H.resolve_precision(Config(precision="fp16"), torch.device("cpu"))


def test_cpu_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    assert H.resolve_precision(Config(), cpu) == ("bf16" if H.cpu_has_native_bf16() else "fp32")
    assert H.resolve_precision(Config(precision="fp32"), cpu) == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # imitating an AVX2-only CPU: no native bf16
    assert H.resolve_precision(Config(), cpu) == "fp32"
