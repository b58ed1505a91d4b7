"""Bad input fails cleanly, before anything is written: through the CLI (`python -m mnist_pairs
train`: one line `error: …` on stderr, exit code 2, no traceback) and through papermill (a
PapermillExecutionError that names the problem, raised before any training). Damaged derived
data (subset and pair caches) is drawn again instead.

Every case runs in its own scratch folder: out_dir points there, and data_root is a scratch
data root whose MNIST/raw files link to the real ones, so the project's own caches are never
touched and "nothing was created" can be checked exactly. A fresh interpreter pays ~2 s of
imports per CLI call, so the bad-params and resume calls fork from one interpreter that has
imported them (conftest.ZYGOTE); other CLI calls start fresh interpreters.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_pairs import train as T
from mnist_pairs.config import Config
from mnist_pairs.data import load_data
from mnist_pairs.errors import CheckpointError, RunNotFound
from mnist_pairs.mnist import MNIST_FILES
from mnist_pairs.paths import PROJECT_ROOT, REPORTS_DIR
from mnist_pairs.runs import Run

from conftest import QUIET, TINY


# --------------------------------------------------------------------------- helpers

def scratch_data_root(where: Path, mnist_root: Path) -> Path:
    """A data root holding only MNIST/raw, whose four files link to the verified real ones."""
    raw = where / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).symlink_to(mnist_root / "MNIST" / "raw" / name)
    return where


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "mnist_pairs", *map(str, args)]


def user_error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's contract for bad input: exit 2, one line `error: …` on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == "", proc.stdout
    return lines[0]


# --------------------------------------------------------------------------- 1-4: bad params files

HEAD = "# a tiny run, every path in a scratch folder\nout_dir: {out}\ndata_root: {data}\n"   # lines 1-3
TAIL = "".join(f"{k}: {v}\n" for k, v in TINY.items() if k != "epochs")

# (case, params file text, patterns the error line must match besides the file name)
BAD_PARAMS = [
    # 1. YAML problems: the file and the line
    ("syntax", HEAD + "epochs: 1\nbatch_size: 64: 3\n" + TAIL, [r", line 5\b", "mapping values are not allowed"]),
    ("tab", HEAD + "epochs: 1\n\tlr: 0.001\n" + TAIL, [r", line 5\b", "never tabs"]),
    ("nul", HEAD + "epochs: 1\nlr: 0.001\x00\n" + TAIL, [r", line 5\b", "NUL byte"]),
    ("list", "# a list is not a params file\n- out_dir: {out}\n- data_root: {data}\n- epochs: 1\n",
     [r", line 2\b", "mapping"]),
    ("duplicate", HEAD + "epochs: 1\nlr: 0.001\nepochs: 2\n" + TAIL,
     [r", line 6\b", r"duplicate key 'epochs' \(first on line 4\)"]),
    # 2. wrong types and non-finite numbers: the file and the key
    ("epochs_many", HEAD + 'epochs: "many"\n' + TAIL, [r"epochs must be int, got str 'many'"]),
    ("lr_inf", HEAD + "epochs: 1\nlr: .inf\n" + TAIL, [r"lr must be a finite number, got inf"]),
    ("lr_nan", HEAD + "epochs: 1\nlr: .nan\n" + TAIL, [r"lr must be a finite number, got nan"]),
    # 3. impossible values
    ("seed_negative", HEAD + "epochs: 1\nseed: -1\n" + TAIL, [r"\bseed must be in \[0, 2\*\*32\), got -1\b"]),
    ("seed_2_32", HEAD + "epochs: 1\nseed: 4294967296\n" + TAIL, [r"\bseed must be in \[0, 2\*\*32\), got 4294967296\b"]),
    ("data_seed_negative", HEAD + "epochs: 1\ndata_seed: -1\n" + TAIL, [r"data_seed must be in \[0, 2\*\*32\), got -1\b"]),
    ("fraction_tiny", HEAD + "epochs: 1\nsubset_fraction: 0.0001\n" + TAIL,
     [r"subset_fraction must be in \[0\.002, 1\]", "per digit", r"got 0\.0001\b"]),
]


@pytest.fixture(scope="module")
def bad_params_runs(tmp_path_factory, mnist_root, forked_cli):
    runs = {}
    for case, text, _ in BAD_PARAMS:
        d = tmp_path_factory.mktemp(case)
        root = scratch_data_root(d / "data", mnist_root)
        out = d / "runs"
        params = d / "params.yaml"
        params.write_bytes(text.format(out=out, data=root).encode("utf-8"))
        before = listing(root)
        runs[case] = dict(params=params, out=out, root=root, root_before=before, folder=d,
                          proc=forked_cli("train", "--params", params))
    return runs


@pytest.mark.parametrize("case", ["syntax", "seed_negative"])
def test_forked_cli_matches_a_fresh_interpreter(bad_params_runs, case):
    r = bad_params_runs[case]
    fresh = subprocess.run(cli_command("train", "--params", r["params"]), capture_output=True, text=True,
                           cwd=PROJECT_ROOT, timeout=300)
    assert (fresh.returncode, fresh.stdout, fresh.stderr) == (r["proc"].returncode, r["proc"].stdout,
                                                              r["proc"].stderr)


def test_bad_params_files_are_valid_yaml_except_where_meant(bad_params_runs):
    # the fixtures test what they claim: the type/value cases parse, the YAML cases do not
    for case, _, _ in BAD_PARAMS[5:]:
        assert isinstance(yaml.safe_load(bad_params_runs[case]["params"].read_text()), dict), case


@pytest.mark.parametrize("case, patterns", [(c, p) for c, _, p in BAD_PARAMS], ids=[c for c, _, _ in BAD_PARAMS])
def test_bad_params_file_fails_cleanly_and_creates_nothing(bad_params_runs, case, patterns):
    import re

    r = bad_params_runs[case]
    line = user_error_line(r["proc"])
    assert str(r["params"]) in line, line                      # names the file
    for pattern in patterns:
        assert re.search(pattern, line), (pattern, line)
    # 4. nothing created: no run folder, no cache, nothing else in the case's folder
    assert not r["out"].exists(), listing(r["out"])
    assert listing(r["root"]) == r["root_before"]
    assert sorted(p.name for p in r["folder"].iterdir()) == ["data", "params.yaml"]


# --------------------------------------------------------------------------- 5: damaged caches

def _tamper_json(path: Path) -> None:
    rec = json.loads(path.read_text())
    if "pairs" in rec:
        rec["pairs"][0][0] ^= 1
    else:
        rec["train"][0] += 1
    path.write_text(json.dumps(rec))


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_caches_are_drawn_again_identically(tmp_path, mnist_root, forked_cli, damage):
    """Truncated caches, then training through the CLI; corrupt ones (bad checksum, not UTF-8) through load_data."""
    root = scratch_data_root(tmp_path / "data", mnist_root)
    cfg = Config(**{**TINY, "heldout_pairs": 200}, data_root=str(root), out_dir=str(tmp_path / "runs"),
                 run_name="r")
    load_data(cfg, **QUIET)                                      # the fresh draw
    caches = sorted((root / "subsets").glob("*.json"))
    assert sorted(p.name.split("_")[0] for p in caches) == ["heldout", "subset", "test", "val"]
    fresh = {p: p.read_bytes() for p in caches}
    for p in caches:
        if damage == "truncate":
            p.write_bytes(fresh[p][: len(fresh[p]) // 2])
        elif p.name.startswith(("subset", "heldout")):
            _tamper_json(p)                                        # valid JSON, wrong checksum
        else:
            p.write_bytes(bytes(range(256)) * 8)                   # not even UTF-8
    if damage == "truncate":
        params = tmp_path / "params.yaml"
        params.write_text(cfg.to_yaml())
        proc = forked_cli("train", "--params", params)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        said = proc.stdout.splitlines()
        assert said[-1] == str(cfg.out_path / "r")
    else:   # training on rebuilt caches is covered above; here the rebuild itself, in-process
        said = []
        load_data(cfg, log=said.append)
    for p in caches:
        about = [line for line in said if str(p) in line]
        assert about and "cache" in about[0] and "again" in about[0], (p.name, said)
        assert p.read_bytes() == fresh[p], f"{p.name} was not rebuilt identical to a fresh draw"
    assert sorted((root / "subsets").iterdir()) == caches         # no temporary files left
    if damage == "truncate":
        run = Run.open(cfg.out_path / "r")
        assert run.finished and run.results["best_heldout"]["pairs"] == 200


# --------------------------------------------------------------------------- 6, 7: damaged or missing runs

@pytest.fixture(scope="module")
def base_run(tmp_path_factory, mnist_root) -> Path:
    """A finished one-epoch run; tests work on copies of it."""
    d = tmp_path_factory.mktemp("base")
    root = scratch_data_root(d / "data", mnist_root)
    return T.fit(Config(**TINY, data_root=str(root), out_dir=str(d / "runs"), run_name="base"), **QUIET).dir


def copy_run(base: Path, dest: Path) -> Path:
    """A copy of the run without its digests.json, as a run killed before it finished has none: the
    damage below is then found by reading the file (test_deploy checks damage against a digest)."""
    dest = Path(shutil.copytree(base, dest))
    (dest / "digests.json").unlink()
    return dest


@pytest.fixture(scope="module")
def resume_failures(tmp_path_factory, base_run, forked_cli):
    d = tmp_path_factory.mktemp("resume")
    truncated = copy_run(base_run, d / "truncated_last")
    last = truncated / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    no_last = d / "no_last"                     # killed before its first epoch ended
    no_last.mkdir()
    for name in ("config.yaml", "env.json"):
        shutil.copy(base_run / name, no_last / name)
    missing = d / "does_not_exist"
    cases = {"truncated_last": truncated, "no_last": no_last, "missing": missing}
    before = {k: contents(p) if p.exists() else None for k, p in cases.items()}
    return {k: dict(dir=p, before=before[k], proc=forked_cli("train", "--resume", p)) for k, p in cases.items()}


def test_resume_from_a_truncated_last_pt_names_the_file_and_the_fix(resume_failures):
    r = resume_failures["truncated_last"]
    line = user_error_line(r["proc"])
    assert str(r["dir"] / "last.pt") in line and "truncated or corrupt" in line, line
    assert "To fix it, start the run again" in line, line
    assert contents(r["dir"]) == r["before"]                    # env.json gained no resume record


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -1], ids=["empty", "1B", "100B", "half", "all-but-1B"])
def test_every_truncation_of_last_pt_is_a_checkpoint_error(tmp_path, base_run, keep):
    run_dir = copy_run(base_run, tmp_path / "run")
    last = run_dir / "last.pt"
    size = last.stat().st_size
    last.write_bytes(last.read_bytes()[: int(size * keep) if isinstance(keep, float) else keep % size])
    before = contents(run_dir)
    with pytest.raises(CheckpointError, match="last.pt cannot be read") as e:
        T.fit(resume=run_dir, **QUIET)
    assert str(last) in str(e.value) and "To fix it" in str(e.value)
    assert contents(run_dir) == before


@pytest.mark.parametrize("keep", [0, 0.5, -1], ids=["empty", "half", "all-but-1B"])
def test_truncated_best_pt_is_a_checkpoint_error_naming_the_file(tmp_path, base_run, keep):
    run_dir = copy_run(base_run, tmp_path / "run")
    best = run_dir / "best.pt"
    size = best.stat().st_size
    best.write_bytes(best.read_bytes()[: int(size * keep) if isinstance(keep, float) else keep % size])
    run = Run.open(run_dir)
    with pytest.raises(CheckpointError) as e:
        run.model()
    assert str(best) in str(e.value) and "truncated or corrupt" in str(e.value)
    run.model("last")                                              # the other checkpoint still loads


def test_resume_of_a_missing_run_folder(resume_failures):
    r = resume_failures["missing"]
    line = user_error_line(r["proc"])
    assert f"cannot resume {r['dir']}: no such run folder" in line, line
    assert not r["dir"].exists()


def test_resume_of_a_run_folder_without_last_pt(resume_failures):
    r = resume_failures["no_last"]
    line = user_error_line(r["proc"])
    assert f"cannot resume {r['dir']}: it has no last.pt" in line and "start a new run instead" in line, line
    assert contents(r["dir"]) == r["before"]
    with pytest.raises(RunNotFound, match="no last.pt"):
        T.fit(resume=r["dir"], **QUIET)


# --------------------------------------------------------------------------- 8: papermill

def _execute(notebook: str, tmp_path: Path, parameters: dict):
    import nbformat
    import papermill as pm

    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(PROJECT_ROOT / "notebooks" / notebook), str(out), parameters=parameters,
                            cwd=str(tmp_path), progress_bar=False, log_output=False)
    return e.value, nbformat.read(str(out), as_version=4)


def _never_ran(nb, marker: str) -> None:
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert cells, marker
    for c in cells:
        assert c.execution_count is None and not c.outputs, c.source


# A kernel per case costs ~7 s: one misspelt key and one wrong type reach the config cell by -p;
# every other bad value is the same load_config check, tested for the CLI above and in test_config.
@pytest.mark.parametrize("parameters, ename, patterns", [
    ({"epcohs": 25}, "ConfigError", ["unknown config key", "'epcohs'", "did you mean 'epochs'"]),
    ({"epochs": "many"}, "ConfigError", ["epochs must be int, got str 'many'"]),
], ids=["epcohs", "epochs_many"])
def test_02_train_rejects_bad_parameters_before_training(tmp_path, mnist_root, parameters, ename, patterns):
    root = scratch_data_root(tmp_path / "data", mnist_root)
    root_before = listing(root)
    out_dir = tmp_path / "runs"
    err, nb = _execute("02_train.ipynb", tmp_path, {**parameters, "out_dir": str(out_dir), "data_root": str(root),
                                                      "run_name": "pm"})
    assert err.ename == ename, (err.ename, err.evalue)
    for p in patterns:
        assert p in err.evalue and p in str(err), (p, err.evalue)
    _never_ran(nb, "load_data(cfg)")                             # failed at the config cell,
    _never_ran(nb, "run = fit(cfg")                               # long before training
    assert not out_dir.exists()
    assert listing(root) == root_before


def test_03_analysis_rejects_a_misspelt_parameter(tmp_path):
    published = [REPORTS_DIR / "runs" / "x", REPORTS_DIR / "figures" / "x"]
    assert not any(p.exists() for p in published)
    err, nb = _execute("03_analysis.ipynb", tmp_path, {"publsh_as": "x"})
    assert err.ename == "ConfigError", (err.ename, err.evalue)
    assert "'publsh_as'" in err.evalue and "did you mean 'publish_as'" in err.evalue, err.evalue
    _never_ran(nb, "analyze(run, embedded_images)")
    assert not any(p.exists() for p in published)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb"]


# One file the YAML parser refuses and one whose value load_config refuses, given to 02 as -p
# params_file: the config cell raises the CLI's message. The other BAD_PARAMS cases are the same
# two code paths (each case's message is tested through the CLI above).
PAPERMILL_PARAMS_CASES = ["syntax", "fraction_tiny"]


@pytest.mark.parametrize("case", PAPERMILL_PARAMS_CASES)
def test_02_train_with_a_bad_params_file_fails_at_the_config_cell(tmp_path, mnist_root, case):
    """The bad params files of the CLI cases, given to 02 as `-p params_file …`: the same message
    (file, line or key), raised by the config cell, with nothing written."""
    import re

    text, patterns = next((t, p) for c, t, p in BAD_PARAMS if c == case)
    root = scratch_data_root(tmp_path / "data", mnist_root)
    root_before = listing(root)
    out_dir = tmp_path / "runs"
    params = tmp_path / "params.yaml"
    params.write_bytes(text.format(out=out_dir, data=root).encode("utf-8"))
    err, nb = _execute("02_train.ipynb", tmp_path, {"params_file": str(params), "run_name": "pm"})
    assert err.ename == "ConfigError", (err.ename, err.evalue)
    assert str(params) in err.evalue, err.evalue
    for pattern in patterns:
        assert re.search(pattern, err.evalue), (pattern, err.evalue)
    _never_ran(nb, "load_data(cfg)")
    assert not out_dir.exists() and listing(root) == root_before


def test_03_analysis_of_a_missing_run_names_it(tmp_path):
    missing = tmp_path / "no_such_run"
    err, nb = _execute("03_analysis.ipynb", tmp_path, {"run_dir": str(missing)})
    assert err.ename == "RunNotFound", (err.ename, err.evalue)
    assert str(missing) in err.evalue and "not a run folder" in err.evalue, err.evalue
    _never_ran(nb, "analyze(run, embedded_images)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb"]
