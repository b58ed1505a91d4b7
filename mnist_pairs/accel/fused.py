"""Fused encoder blocks for training on the CPU, fp32 or bf16 autocast (config `fused_blocks: true`).

    model = build_model("siamese", fused=True)   # training-mode encoder passes use the kernels

An encoder's `BatchNorm2d -> ReLU -> MaxPool2d(2)` and `BatchNorm2d -> ReLU -> AdaptiveAvgPool2d(1)`
run as one C++ kernel each (csrc/fused_blocks.cpp), forward and backward: in exact arithmetic the
same function, parameters, running statistics and gradients as the three modules. Rounding
differs: sums run in another order, and under bf16 autocast the modules round BatchNorm's output
to bfloat16 before ReLU and pooling, while the kernel computes BatchNorm, ReLU and pooling in
float32 and rounds only its result (activations are read and written in their dtype).
tests/test_fused.py checks the blocks against the modules in the same dtype. On a 2-core CPU these
blocks are bound by memory traffic over the (B,C,28,28) activations, not arithmetic: the modules
read and write it about a dozen times per step (BatchNorm, ReLU, pooling, and their backward
passes, each on its own), the kernels four times. Convolutions stay with oneDNN. What that saves
per step and per epoch is measured by benchmarks/bench_epoch.py (reports/benchmarks/).

The kernel compiles on first use (torch's extension cache keeps it), with the C++ compiler that torch.compile also needs. Evaluation, other dtypes and devices, odd pooled
sizes and layouts other than channels_last run the modules as they are.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

SOURCE = Path(__file__).with_name("csrc") / "fused_blocks.cpp"


@functools.lru_cache(maxsize=None)
def kernels():
    """The kernels' operators (built once per machine and torch version, then loaded from cache)."""
    import logging

    from ..hardware import cpu_flags

    # importing cpp_extension warns that no CUDA runtime is found: irrelevant to a CPU kernel
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    # torch runs `ninja` from PATH: put this environment's (the ninja package) first, so it is
    # found when the venv is not activated
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    # AVX2 + FMA at most, so the kernel is the same on both kinds of the project's CPUs
    isa = ["-mavx2", "-mfma"] if {"avx2", "fma"} <= cpu_flags() else []
    try:
        cpp_extension.load(name="mnist_pairs_fused_blocks", sources=[str(SOURCE)], is_python_module=False,
                           extra_cflags=["-O3", "-fopenmp", *isa], extra_ldflags=["-fopenmp"],
                           verbose=bool(os.environ.get("MNIST_PAIRS_VERBOSE_BUILD")))
    except (OSError, RuntimeError, ImportError) as e:
        raise ConfigError(f"fused_blocks: the C++ kernel {SOURCE.name} did not build ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[-1] if str(e).strip() else e}); it needs a C++ compiler "
                          "(g++); set fused_blocks: false to train with the plain modules") from e
    return torch.ops.mnist_pairs_fused    # the operators the library registered when it was loaded


def require(device: torch.device, precision: str) -> None:
    """Stop with a ConfigError unless the kernels can run here (CPU, fp32 or bf16, built)."""
    if device.type != "cpu" or precision not in ("fp32", "bf16"):
        raise ConfigError(f"fused_blocks needs the CPU in fp32 or bf16 (its kernels are CPU code), but this run "
                          f"resolved to {device.type} / {precision}; set device: cpu or fused_blocks: false")
    kernels()


def _update_running(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """BatchNorm2d's running statistics update (unbiased variance), as the module does it."""
    with torch.no_grad():
        bn.num_batches_tracked += 1
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - m).add_(mean, alpha=m)
        bn.running_var.mul_(1 - m).add_(var * (n / max(n - 1, 1)), alpha=m)


class _BNReLUMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, bias, bn):
        z, ym, arg, mean, var = kernels().bn_relu_maxpool_forward(y, weight, bias, bn.eps)
        _update_running(bn, mean, var, y.numel() // y.shape[1])
        ctx.save_for_backward(z, ym, arg, y, mean, var, weight)
        ctx.eps = bn.eps
        return z

    @staticmethod
    def backward(ctx, dz):
        z, ym, arg, y, mean, var, weight = ctx.saved_tensors
        dy, dweight, dbias = kernels().bn_relu_maxpool_backward(dz, z, ym, arg, y, mean, var, weight, ctx.eps)
        return dy, dweight, dbias, None


class _BNReLUAvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, bias, bn):
        out, mean, var = kernels().bn_relu_avgpool_forward(y, weight, bias, bn.eps)
        _update_running(bn, mean, var, y.numel() // y.shape[1])
        ctx.save_for_backward(y, mean, var, weight, bias)
        ctx.eps = bn.eps
        return out

    @staticmethod
    def backward(ctx, dout):
        y, mean, var, weight, bias = ctx.saved_tensors
        dy, dweight, dbias = kernels().bn_relu_avgpool_backward(dout, y, mean, var, weight, bias, ctx.eps)
        return dy, dweight, dbias, None


def _block(mods: list[nn.Module], i: int):
    """The fused function for the three modules at mods[i:i+3], or None."""
    if i + 2 >= len(mods) or not (isinstance(mods[i], nn.BatchNorm2d) and isinstance(mods[i + 1], nn.ReLU)):
        return None
    pool = mods[i + 2]
    if isinstance(pool, nn.MaxPool2d) and pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2)) \
            and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1)) and not pool.ceil_mode:
        return _BNReLUMaxPool
    if isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1)):
        return _BNReLUAvgPool
    return None


def _applies(bn: nn.BatchNorm2d, x: torch.Tensor, fn) -> bool:
    return (bn.training and bn.track_running_stats and bn.affine and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16) and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and (fn is _BNReLUAvgPool or (x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0)))


def run_sequential(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`seq(x)` with every fusable block fused; the rest (and every block in eval mode) as modules."""
    mods, i = list(seq), 0
    while i < len(mods):
        fn = _block(mods, i)
        if fn is not None and _applies(mods[i], x, fn):
            x = fn.apply(x, mods[i].weight, mods[i].bias, mods[i])
            i += 3
            continue
        x = mods[i](x)
        i += 1
    return x
