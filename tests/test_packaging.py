"""The project's own files install what it needs, the same way for pip and conda users."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import yaml

from mnist_pairs.paths import PROJECT_ROOT


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(project, key=_name) == sorted(pip, key=_name)


def test_torch_pins_agree_with_constraints():
    pins = [l for l in (PROJECT_ROOT / "constraints.txt").read_text().splitlines() if l and not l.startswith("#")]
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in pins:
        assert pin in project, pin


def test_cli_help_shows_defaults_and_bad_override_fails_cleanly():
    run = lambda *a: subprocess.run([sys.executable, "-m", "mnist_pairs", *a], capture_output=True, text=True,
                                    cwd=PROJECT_ROOT, timeout=120)
    h = run("train", "--help")
    assert h.returncode == 0 and "batch_size" in h.stdout and "256" in h.stdout and "precision" in h.stdout
    bad = run("train", "--params", "params/smoke.yaml", "--set", "epcohs=3")
    assert bad.returncode == 2 and "did you mean 'epochs'" in bad.stderr
    v = run("verify-data")
    assert v.returncode == 0 and v.stdout.count("ok") == 4


def test_run_environment_records_torchvision_version_without_importing_it():
    """env.json's torchvision version (local tag included) is read from the package's version.py,
    so a run does not pay torchvision's import; it is the version torchvision itself reports."""
    code = ("import sys; from mnist_pairs import hardware; v = hardware.torchvision_version(); "
            "assert 'torchvision' not in sys.modules; import torchvision; print(v == torchvision.__version__, v)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("True "), out.stdout + out.stderr[-2000:]
