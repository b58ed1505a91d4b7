"""`make lock`: requirements.lock from pyproject.toml, every package's exact version and sha256.

    python tools/lock.py OUT   # after `uv pip compile pyproject.toml --generate-hashes -o OUT`

uv resolves for this platform (its markers: CPython on x86-64 Linux, the project's machines) with the
indexes pip is configured with; this script puts a header in front of uv's output naming the
sha256 of pyproject.toml's dependency list it was compiled from, so that a test
(tests/test_packaging.py) sees when the two disagree. Standard library only: it runs before
anything is installed.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "# pyproject dependencies sha256: "


def dependencies_digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return hashlib.sha256(json.dumps(sorted(deps)).encode()).hexdigest()


def main(out: str) -> None:
    path = Path(out)
    body = "".join(l for l in path.read_text().splitlines(keepends=True) if not l.startswith(MARK))
    header = (f"{MARK}{dependencies_digest()}\n"
              "# Regenerate with `make lock` after changing pyproject.toml's dependencies; both README commands\n"
              "# install exactly these versions (hashes checked).\n")
    path.write_text(header + body)


if __name__ == "__main__":
    main(sys.argv[1])
