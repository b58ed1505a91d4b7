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


def _locked() -> dict[str, str]:
    """{name: version} of requirements.lock's pins."""
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    return {_name(m.group(1)): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", text, re.M)}


def test_environment_yml_installs_the_lock():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-r requirements.lock"]


def test_the_lock_was_compiled_from_pyproject_and_satisfies_it():
    """requirements.lock's header names the digest of the dependency list it came from (`make lock`),
    every pin carries a sha256, and every requirement of pyproject.toml is pinned to a version it allows."""
    from packaging.requirements import Requirement

    sys.path.insert(0, str(PROJECT_ROOT / "tools"))
    try:
        from lock import MARK, dependencies_digest
    finally:
        sys.path.pop(0)
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    assert text.startswith(MARK + dependencies_digest()), "pyproject.toml changed since the lock: run `make lock`"
    pins = _locked()
    assert len(re.findall(r"^\S+==\S+ \\$", text, re.M)) == len(pins) > 100   # each pin continues with its hashes
    for dep in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(dep)
        assert _name(req.name) in pins and req.specifier.contains(pins[_name(req.name)], prereleases=True), dep


def test_the_environment_holds_exactly_the_locked_versions():
    """The interpreter running the tests (.venv, as `make test` installed it) has every locked package at
    its locked version and nothing else beyond the installers and the project itself."""
    import sysconfig
    from importlib.metadata import distributions

    # site-packages only: once setuptools is imported, sys.path also holds its _vendor folder, whose
    # vendored copies (packaging, platformdirs …) carry dist-info of their own
    site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    installed = {_name(d.metadata["Name"]): d.version for d in distributions(path=sorted(site))}
    pins = _locked()
    assert {n: installed.get(n) for n in pins} == pins
    assert set(installed) - set(pins) <= {"pip", "uv", "setuptools", "wheel", "mnist-pairs"}


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
