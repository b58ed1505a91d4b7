"""Device and precision: one AMP code path for CPU and GPU, and the facts a run records.

    device = resolve_device(cfg)          # "auto" -> CUDA when present
    precision = resolve_precision(cfg, device)   # "fp16" on CUDA, "bf16" on CPUs with native bf16, else "fp32"
    with autocast(device, precision): ...

A run's config.yaml records the resolved device and precision, so it says what ran.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import re
import subprocess
from contextlib import nullcontext
from pathlib import Path

import torch

from .errors import ConfigError
from .paths import PROJECT_ROOT

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(cfg) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available here; use --set device=cpu "
                          "(a run trained on CUDA then continues on the CPU, with different rounding)")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def cpu_has_native_bf16() -> bool:
    """oneDNN runs bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if isa != "ALL" and "BF16" not in isa and "AMX" not in isa:
        return False  # oneDNN capped below bf16 (e.g. AVX2, to imitate an AVX2-only CPU)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(cfg, device: torch.device) -> str:
    """"fp32", "bf16" or "fp16" for this config on this device."""
    if cfg.precision == "auto":
        if device.type == "cuda":
            return "fp16"  # as the seed: fp16 autocast + GradScaler
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision 'fp16' needs CUDA (CPU autocast has no float16 fast path); "
                          "use precision=bf16 or fp32 on the CPU")
    return cfg.precision


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def setup_backend(cfg, device: torch.device) -> None:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("medium")


LOCK_FILE = PROJECT_ROOT / "requirements.lock"   # every package's exact version and hash (`make lock`)


def lock_sha256() -> str | None:
    """The sha256 of requirements.lock: which locked environment a run was trained in."""
    import hashlib

    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest() if LOCK_FILE.is_file() else None


def numeric_path(device: torch.device, precision: str) -> dict:
    """What decides a run's arithmetic bit for bit beyond its config: torch's intra-op thread count
    (reductions split by thread), the precision and the kernels ATen dispatches to (AVX2 / AVX512)
    and oneDNN's ISA cap. last.pt records it; a resume under another one would continue a different
    computation, so fit refuses it unless told otherwise (runs.check_numeric_path)."""
    return {"threads": torch.get_num_threads(), "precision": precision, "device": device.type,
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA")}


def memory_format(cfg):
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(l.split(":", 1)[1].split() for l in f if l.startswith("flags")))
    except (OSError, StopIteration):
        return set()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def torchvision_version() -> str:
    """torchvision.__version__ with its local tag (e.g. 0.29.1+cu130, which the installed
    distribution's metadata lacks), read from its version.py: importing torchvision pulls in
    torch._dynamo (about 2.4 s after torch here; 0.4 s where an optimizer has imported it)."""
    spec = importlib.util.find_spec("torchvision")
    version_py = Path(spec.origin).with_name("version.py") if spec and spec.origin else None
    if version_py and version_py.is_file():
        m = re.search(r"^__version__ = '([^']+)'", version_py.read_text(encoding="utf-8"), re.M)
        if m:
            return m.group(1)
    import torchvision

    return torchvision.__version__


def environment(device: torch.device, precision: str) -> dict:
    """Facts a reader needs to trust or reproduce a run's numbers and timings."""
    import matplotlib
    import numpy
    import sklearn

    flags = cpu_flags()
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torchvision": torchvision_version(), "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__, "matplotlib": matplotlib.__version__,
        "git_commit": _git_commit(), "requirements_lock_sha256": lock_sha256(), "device": str(device), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "cpu_isa": "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other",
        "cpu_native_bf16": cpu_has_native_bf16(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels ATen dispatches to
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "precision": precision,
        "autocast": str(AUTOCAST[precision]).replace("torch.", "") if AUTOCAST[precision] else "off",
        "grad_scaler": precision == "fp16",
    }
