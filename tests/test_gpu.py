"""CUDA-only paths: float16 autocast + GradScaler on the GPU. Skipped (never failed, never
silently passed) where CUDA is absent, as in CI."""
from __future__ import annotations

import pytest
import torch

from mnist_pairs import train as T
from mnist_pairs.config import Config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")


@cuda
def test_cuda_run_uses_float16_autocast_and_grad_scaler(tmp_path, subset):
    cfg = Config(device="cuda", epochs=1, train_pairs=1024, test_pairs=400, out_dir=str(tmp_path), run_name="gpu")
    assert T.autocast_dtype(cfg, torch.device("cuda")) == torch.float16
    run = T.fit(cfg, log=lambda m: None)
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["scaler"]["scale"] > 0  # the GradScaler was enabled and stepped
    assert T.read_history(run)[0]["test_acc"] > 0.5


def test_asking_for_cuda_without_it_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    from mnist_pairs.config import ConfigError

    with pytest.raises(ConfigError, match="CUDA is not available"):
        T.resolve_device(Config(device="cuda"))


def test_cpu_autocast_follows_the_hardware():
    dtype = T.autocast_dtype(Config(), torch.device("cpu"))
    assert dtype == (torch.bfloat16 if T.cpu_has_native_bf16() else None)
    assert T.autocast_dtype(Config(amp_cpu=False), torch.device("cpu")) is None
    assert T.autocast_dtype(Config(amp=False), torch.device("cpu")) is None
