"""The fused encoder blocks (accel/fused.py, accel/csrc/fused_blocks.cpp) against the modules they replace.

The kernels read float32 or bfloat16 activations and must agree with BatchNorm2d -> ReLU -> pool run
as modules in the same dtype: in float32 to float32 rounding, in bfloat16 to one bfloat16 rounding
step of the modules' own output (outputs, gradients and running statistics)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_pairs import train as T
from mnist_pairs.accel import fused
from mnist_pairs.config import Config, ConfigError
from mnist_pairs.models import build_model

CL = torch.channels_last
# BatchNorm scales: positive, negative (the min-pooled channel) and exactly 0 with a positive bias
# (a live, flat channel: every element of a window ties, MaxPool2d picks the first)
WEIGHT = [1.0, -0.5, 2.0, 0.3, 0.0, 1.5]
BIAS = [0.1, -0.2, 0.3, 0.0, 0.7, -0.1]
TOL = {torch.float32: {"rtol": 1.3e-6, "atol": 1e-5}, torch.bfloat16: {"rtol": 2 ** -7, "atol": 1e-3}}
# d weight and d bias are sums over a channel's B*H*W = 1,024 elements: in float32 the modules' sum
# rounds by its order, which follows their thread count (1.4e-5 on a value of 1.3 with one thread)
SUM_TOL = {torch.float32: {"rtol": 1.3e-6, "atol": 5e-5}, torch.bfloat16: TOL[torch.bfloat16]}


@pytest.fixture(scope="session")
def kernels():
    return fused.kernels()  # built once (about 10 s), then loaded from torch's extension cache


def _block(pool: nn.Module) -> nn.Sequential:
    seq = nn.Sequential(nn.BatchNorm2d(len(WEIGHT)), nn.ReLU(inplace=True), pool)
    with torch.no_grad():
        seq[0].weight.copy_(torch.tensor(WEIGHT))
        seq[0].bias.copy_(torch.tensor(BIAS))
    return seq


def _grads(forward, bn: nn.BatchNorm2d, y, w):
    """Output of forward(y), and the gradients of sum(out * w) for y and BatchNorm's weight and bias."""
    y = y.detach().requires_grad_()
    out = forward(y)
    grads = torch.autograd.grad((out * w.to(out.dtype)).sum(), (y, bn.weight, bn.bias))
    return [out.detach(), *grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)], ids=["maxpool", "avgpool"])
def test_block_equals_the_modules_in_the_same_dtype(kernels, pool, dtype):
    seq = _block(pool)
    torch.manual_seed(1)
    y = torch.randn(16, 6, 8, 8)
    y[:, :, :2, :2] = 0.25                  # equal values within windows: ties
    y = y.to(dtype).contiguous(memory_format=CL)
    w = torch.randn(copy.deepcopy(seq)(y).shape)
    plain_seq, fused_seq = copy.deepcopy(seq), copy.deepcopy(seq)
    want = _grads(plain_seq, plain_seq[0], y, w)
    got = _grads(lambda x: fused.run_sequential(fused_seq, x), fused_seq[0], y, w)
    assert got[2][4] != 0                   # the zero-scale channel is live: its weight has a gradient
    for name, g, p in zip(("output", "d input", "d weight", "d bias"), got, want):
        assert g.dtype == p.dtype and g.shape == p.shape, name
        tol = SUM_TOL if name in ("d weight", "d bias") else TOL
        torch.testing.assert_close(g.float(), p.float(), **tol[p.dtype], msg=name)
    bn, bn_plain = fused_seq[0], plain_seq[0]
    assert int(bn.num_batches_tracked) == int(bn_plain.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, bn_plain.running_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.running_var, bn_plain.running_var, rtol=0, atol=1e-6)


def _model_step_inputs():
    """The Siamese net twice (modules, fused; same weights) and one batch."""
    torch.manual_seed(0)
    plain = build_model("siamese", dropout=False).to(memory_format=CL)
    fast = copy.deepcopy(plain)
    fast.fused = True
    xa, xb = (torch.randn(64, 1, 28, 28).contiguous(memory_format=CL) for _ in range(2))
    y = (torch.rand(64) > 0.5).float()
    return plain, fast, xa, xb, y


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16-autocast"])
def test_model_step_matches_the_modules(kernels, dtype):
    """A training step of the whole Siamese net, in float32 or under bf16 autocast (the default on
    CPUs with native bf16): every gradient close to the modules' in the same precision. Over three
    blocks, BatchNorm's backward (a difference of means) magnifies rounding: float32 steps agree to
    1e-2 of each gradient's norm (up to 5e-3 seen: the first block's, where the modules' own float32
    gradients are as far from float64), bf16 steps (activations rounded between layers) to 0.2; the exact
    per-block agreement is the test above."""
    plain, fast, xa, xb, y = _model_step_inputs()
    for m in (plain, fast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = m(xa, xb)
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
    conv_biases = {"encoder.0.bias", "encoder.4.bias", "encoder.8.bias"}  # before BatchNorm: zero gradient
    limit = 1e-2 if dtype == torch.float32 else 0.2
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        if name not in conv_biases:
            err = ((q.grad - p.grad).norm() / p.grad.norm()).item()
            assert err <= limit, f"{name}: relative difference {err:.2e}"
    for (name, b), c in zip(plain.named_buffers(), fast.buffers()):
        torch.testing.assert_close(c.double(), b.double(), rtol=0, atol=1e-5, msg=name)


def test_the_kernel_runs_where_it_applies_and_the_modules_elsewhere(kernels, monkeypatch):
    calls = []
    for fn in (fused._BNReLUMaxPool, fused._BNReLUAvgPool):
        monkeypatch.setattr(fn, "apply", lambda *a, _fn=fn, _apply=fn.apply: calls.append(_fn) or _apply(*a))
    seq = _block(nn.MaxPool2d(2))
    y = torch.randn(4, 6, 6, 6)
    fused.run_sequential(copy.deepcopy(seq), y.contiguous(memory_format=CL))
    assert calls == [fused._BNReLUMaxPool]                   # training, channels_last, even size: fused
    calls.clear()
    seq.eval()
    assert torch.equal(fused.run_sequential(seq, y.contiguous(memory_format=CL)), seq(y.contiguous(memory_format=CL)))
    seq.train()
    for x in (y, y[:, :, :5, :5].contiguous(memory_format=CL), y.double().contiguous(memory_format=CL)):
        a, b = copy.deepcopy(seq).to(x.dtype), copy.deepcopy(seq).to(x.dtype)  # NCHW, odd sizes, float64
        assert torch.equal(fused.run_sequential(a, x), b(x))
    assert calls == []                                       # eval mode and those inputs: the modules


def test_fused_blocks_refuse_what_they_cannot_run():
    with pytest.raises(ConfigError, match="fused_blocks needs the CPU"):
        Config(fused_blocks=True, device="cuda")
    with pytest.raises(ConfigError, match="channels_last"):
        Config(fused_blocks=True, channels_last=False)
    with pytest.raises(ConfigError, match="exclude each other"):
        Config(fused_blocks=True, compile=True)
    with pytest.raises(ConfigError, match="resolved to cuda / fp16"):
        fused.require(torch.device("cuda"), "fp16")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fit_with_fused_blocks_records_them(tmp_path, subset, kernels, precision):
    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no bf16 on this CPU")
    cfg = Config(out_dir=str(tmp_path / "runs"), epochs=2, train_pairs=512, test_pairs=200, val_pairs=200,
                 val_images=200, heldout_pairs=0, batch_size=64, precision=precision, fused_blocks=True)
    run = T.fit(cfg, log=lambda m: None)
    assert run.cfg.fused_blocks and run.cfg.precision == precision
    assert run.history["train_loss"].iloc[-1] < run.history["train_loss"].iloc[0]
