"""The fused encoder blocks (fused.py, csrc/fused_blocks.cpp) against the modules they replace.

The kernels read float32 or bfloat16 activations; the reference is the same modules in float64.
The fused blocks must be as close to it as the modules are in the same dtype (outputs, gradients
and running statistics).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_pairs.accel import fused
from mnist_pairs import train as T
from mnist_pairs.config import Config, ConfigError
from mnist_pairs.models import build_model

CL = torch.channels_last


@pytest.fixture(scope="module")
def kernels():
    return fused.kernels()  # built once (about 20 s), then loaded from torch's extension cache


def _block(pool: nn.Module, weight: list[float]) -> nn.Sequential:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.BatchNorm2d(len(weight)), nn.ReLU(inplace=True), pool)
    with torch.no_grad():
        seq[0].weight.copy_(torch.tensor(weight))   # negative and zero scales: min-pooled and flat channels
        seq[0].bias.normal_()
    return seq


def _grads(forward, bn: nn.BatchNorm2d, y, w):
    """Output of forward(y), and the gradients of sum(out * w) for y and BatchNorm's weight and bias."""
    y = y.detach().requires_grad_()
    out = forward(y)
    grads = torch.autograd.grad((out * w.to(out.dtype)).sum(), (y, bn.weight, bn.bias))
    return [out.detach().double(), *(g.double() for g in grads)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)], ids=["maxpool", "avgpool"])
def test_block_matches_modules_as_closely_as_the_modules_do(kernels, pool, dtype):
    seq = _block(pool, [1.0, -0.5, 2.0, 0.3, 0.0, 1.5])
    torch.manual_seed(1)
    y = torch.randn(16, 6, 8, 8)
    y[:, :, :2, :2] = 0.25                  # equal values within windows: ties
    y = y.to(dtype).contiguous(memory_format=CL)
    ref_seq = copy.deepcopy(seq).double()
    w = torch.randn(copy.deepcopy(seq)(y).shape)
    want = _grads(ref_seq, ref_seq[0], y.double(), w)
    plain_seq, fused_seq = copy.deepcopy(seq), copy.deepcopy(seq)
    plain = _grads(plain_seq, plain_seq[0], y, w)
    got = _grads(lambda x: fused.run_sequential(fused_seq, x), fused_seq[0], y, w)
    for name, g, p, r in zip(("output", "d input", "d weight", "d bias"), got, plain, want):
        assert g.shape == r.shape, name
        err, err_plain = (g - r).abs().max().item(), (p - r).abs().max().item()
        assert err <= 4 * err_plain + 1e-6, f"{name}: fused {err:.2e}, modules {err_plain:.2e}"
    bn, bn_ref = fused_seq[0], ref_seq[0]   # statistics: float32 sums of the same (exact) inputs
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean.double(), bn_ref.running_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), bn_ref.running_var, rtol=0, atol=1e-6)


def _model_step_inputs():
    """The Siamese net three times (modules, fused, modules in float64, same weights) and one batch."""
    torch.manual_seed(0)
    plain = build_model("siamese", dropout=False).to(memory_format=CL)
    fast = copy.deepcopy(plain)
    fast.fused = True
    ref = copy.deepcopy(plain).double()
    xa, xb = (torch.randn(64, 1, 28, 28).contiguous(memory_format=CL) for _ in range(2))
    y = (torch.rand(64) > 0.5).float()
    return plain, fast, ref, xa, xb, y


def test_model_step_gradients_match_the_modules(kernels):
    """A float32 training step of the whole Siamese net: fused and plain gradients both within
    float32 rounding of the float64 modules' (conv biases before BatchNorm have a zero gradient)."""
    plain, fast, ref, xa, xb, y = _model_step_inputs()
    for m, dt in ((plain, torch.float32), (fast, torch.float32), (ref, torch.float64)):
        F.binary_cross_entropy_with_logits(m(xa.to(dt), xb.to(dt)), y.to(dt)).backward()
    for (name, p), q, r in zip(plain.named_parameters(), fast.parameters(), ref.parameters()):
        scale = r.grad.abs().max().item() + 1e-6
        err, err_plain = (q.grad.double() - r.grad).abs().max().item(), (p.grad.double() - r.grad).abs().max().item()
        assert err <= 4 * err_plain + 1e-5 * scale, f"{name}: fused {err:.2e}, modules {err_plain:.2e}"
    for (name, b), c in zip(ref.named_buffers(), fast.buffers()):
        torch.testing.assert_close(c.double(), b.double(), rtol=0, atol=1e-5, msg=name)


def test_eval_mode_and_other_inputs_use_the_modules(kernels):
    seq = _block(nn.MaxPool2d(2), [1.0, 0.5])
    y = torch.randn(4, 2, 6, 6)
    seq.eval()
    assert torch.equal(fused.run_sequential(seq, y.contiguous(memory_format=CL)), seq(y.contiguous(memory_format=CL)))
    seq.train()
    for x in (y, y[:, :, :5, :5].contiguous(memory_format=CL), y.double().contiguous(memory_format=CL)):
        a, b = copy.deepcopy(seq).to(x.dtype), copy.deepcopy(seq).to(x.dtype)  # NCHW, odd sizes, float64: the modules
        assert torch.equal(fused.run_sequential(a, x), b(x))


def test_fused_blocks_refuse_what_they_cannot_run():
    with pytest.raises(ConfigError, match="fused_blocks needs the CPU"):
        Config(fused_blocks=True, device="cuda")
    with pytest.raises(ConfigError, match="channels_last"):
        Config(fused_blocks=True, channels_last=False)
    with pytest.raises(ConfigError, match="exclude each other"):
        Config(fused_blocks=True, compile=True)
    with pytest.raises(ConfigError, match="resolved to cuda / fp16"):
        fused.require(torch.device("cuda"), "fp16")


def test_bf16_autocast_step_matches_the_modules(kernels):
    """Under bf16 autocast (the default on CPUs with native bf16) the fused step's loss and
    gradients stay as close to the float64 modules' as the bf16 modules' do."""
    plain, fast, ref, xa, xb, y = _model_step_inputs()
    for m in (plain, fast):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = m(xa, xb)
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
    F.binary_cross_entropy_with_logits(ref(xa.double(), xb.double()), y.double()).backward()
    conv_biases = {"encoder.0.bias", "encoder.4.bias", "encoder.8.bias"}  # before BatchNorm: zero gradient
    errs = {name: [(m.get_parameter(name).grad.double() - r.grad).norm().item() / r.grad.norm().item()
                   for m in (plain, fast)] for name, r in ref.named_parameters() if name not in conv_biases}
    for name, (e_plain, e_fast) in errs.items():
        assert e_fast <= 3 * e_plain + 0.02, f"{name}: relative error fused {e_fast:.3f}, modules {e_plain:.3f}"


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
