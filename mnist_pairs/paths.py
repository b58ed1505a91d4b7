"""Every path the project uses, from one place.

Notebooks run with their own folder as the working directory (nbval) or the caller's
(papermill); neither may change what a path means, so everything is anchored at the
project root found from this file, never at the current directory.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PARAMS_DIR = PROJECT_ROOT / "params"
REPORTS_DIR = PROJECT_ROOT / "reports"
DATA_ENV_VAR = "MNIST_PAIRS_DATA"  # overrides the default data root


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else $MNIST_PAIRS_DATA, else <project>/data."""
    if root:
        return Path(root).expanduser().resolve()
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "data"


def resolve(path: str | os.PathLike) -> Path:
    """A path from a config or parameter: relative paths are relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
