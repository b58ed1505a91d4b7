"""Every path the project uses, from one place, and atomic writes.

Notebooks run with their own folder as the working directory (nbval) or the caller's
(papermill); neither may change what a path means, so everything is anchored at the
project root found from this file, never at the current directory.

Every file the project writes goes through `atomic_write_bytes`: a temporary file beside
the target, fsync, rename. A reader never sees half a file, and a failed write (disk full,
interrupted) removes its temporary file and leaves the old file as it was.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PARAMS_DIR = PROJECT_ROOT / "params"
REPORTS_DIR = PROJECT_ROOT / "reports"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
EXPERIMENTS_DIR = "experiments"           # run folders (config `out_dir`), relative to the project root
SWEEPS_DIR = "experiments/sweeps"         # one folder per sweep group, one run folder per training seed
DATA_ENV_VAR = "MNIST_PAIRS_DATA"  # overrides the default data root
# The runs `make study` publishes, by role: params/<name>.yaml is trained and published as
# reports/runs/<name>/ and reports/figures/<name>/; the report and `compare` find them by role.
PUBLISHED = {"siamese": "seed_siamese", "concat": "seed_concat", "improved": "improved"}
# the published ensemble (serve/ensemble.py): reports/runs/ensemble/, its members' files and ensemble.json.
# Not trained by `make study`: its members are the `best` recipe's confirmation runs (issue 32).
PUBLISHED_ENSEMBLE = "ensemble"


def _under_root(name: str) -> property:
    return property(lambda self: self.root / name)


@dataclass(frozen=True)
class Reports:
    """The map of a reports folder: reports/ itself, or the study's staging or scratch copy of it.

        rp = Reports()                    # reports/
        rp.run("improved")                # reports/runs/improved/ (a published run's files)
        rp.figures("findings")            # reports/figures/findings/
        rp.sweep("seed_siamese__test")    # reports/sweeps/<group>/ (the run files summary.json counts)
    """
    root: Path = REPORTS_DIR

    def run(self, name: str) -> Path:
        return self.root / "runs" / name

    def figures(self, name: str) -> Path:
        return self.root / "figures" / name

    def sweep(self, group: str) -> Path:
        return self.root / "sweeps" / group

    sweeps = _under_root("sweeps")
    benchmarks = _under_root("benchmarks")
    summary = _under_root("summary.json")
    calibration = _under_root("calibration.json")
    confirmation_levers = _under_root("confirmation_levers.json")
    aug_selection = _under_root("aug_selection.json")
    study = _under_root("study.json")
    report = _under_root("report_zh.md")
    tables = _under_root("tables.md")
    robustness = _under_root("robustness.json")


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file beside `path`, then rename; on failure remove the temporary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def utc_time(timestamp: float) -> str:
    """A POSIX time as naive ISO-8601 UTC to the second ("2026-11-29T19:35:05"): the form of run
    files' `started`/`finished`, compared as strings with commit times (ablation.RULE_EVENTS)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def utc_now() -> str:
    import time

    return utc_time(time.time())
