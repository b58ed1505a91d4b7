"""The full study, as the README's main command runs it (`make study`), and its quick smoke.

The data notebook once; then for each params file papermill runs 02_train (the file's full
configuration) and 03_analysis (publishing the run to runs/<name>/ and its figures to
figures/<name>/): seed_siamese and seed_concat on training seed 42, improved as the `best` recipe's
confirmation run on the seed its plan named (recipes.PUBLISHED_RUN, params/improved.yaml). The executed notebooks are saved in
notebooks/. At the end the report is written once, from the published runs, the committed
multi-seed summary (`make sweep`) and the benchmarks.

Nothing is published piecemeal. The study works in a staging copy of reports/ (a sibling
folder, `.reports.staging/`); only when every notebook has run and the report is written does
it move the study's outputs into reports/. A study that dies before that leaves reports/ as it
was; the next study discards the unfinished staging folder. A staging folder marked complete
(the study died while moving, a matter of milliseconds) is finished by the next study first.

One study at a time: a study holds an exclusive lock (`.reports.lock`, beside the staging folder)
from before it looks at the staging folder until its outputs are in place. A second study in
the same clone refuses at once, naming the running one's pid and start time, and leaves its staging
folder alone. The operating system drops the lock when its process dies; the next study takes
it over and says whose it was.

`smoke()` (`make study-smoke`) is the same code path with tiny settings, on a scratch copy of
reports/: every params file, 01 -> 02 -> 03 -> report, and reports/ itself is never written.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ..config import load_config
from ..errors import UserError
from ..paths import NOTEBOOKS_DIR, PUBLISHED, REPORTS_DIR, atomic_write_text

STUDY_PARAMS = [f"params/{name}.yaml" for name in PUBLISHED.values()]
COMPLETE = "STAGING_COMPLETE.json"  # written into the staging folder once everything in it is final
# The smoke's settings: two short epochs of 16 steps of 64 (pairs, or images under shared encoding:
# a 2 % subset, 1,200 / 200 images, 200 of them held out for validation) and small fixed pair sets.
# That checks the code path, not accuracy: 02_train's learning check is switched off (min_test_acc 0).
SMOKE = {"epochs": 2, "subset_fraction": 0.02, "val_images": 200, "train_pairs": 512, "batch_size": 64,
         "test_pairs": 400, "val_pairs": 400, "heldout_pairs": 400, "confirm_pairs": 400}
SMOKE_TRAIN = {"min_test_acc": 0.0}
SMOKE_ANALYSIS = {"embedded_images": 500}


def execute(name: str, out: Path, parameters: dict) -> None:
    import papermill as pm

    print(f"\n=== papermill {name} -> {out}  {parameters}", flush=True)
    pm.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(out), parameters=parameters,
                        cwd=str(NOTEBOOKS_DIR), kernel_name="python3", log_output=True, progress_bar=False)


def staging_dir(reports_dir: Path) -> Path:
    return reports_dir.with_name(f".{reports_dir.name}.staging")


def lock_path(reports_dir: Path) -> Path:
    return reports_dir.with_name(f".{reports_dir.name}.lock")


@contextlib.contextmanager
def study_lock(reports_dir: Path):
    """Hold the study lock of reports_dir (fcntl.flock on lock_path) for the body; refuse with a
    UserError when another live process holds it."""
    path = lock_path(reports_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        holder = os.read(fd, 4096).decode(errors="replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another study is running in this clone ({holder or 'pid unknown'}; lock {path}): "
                            f"wait for it to finish or stop it; its staging folder {staging_dir(reports_dir)} "
                            "is left alone") from None
        if holder:
            print(f"study: took over the lock of a study that is no longer running ({holder})", flush=True)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {datetime.now().isoformat(timespec='seconds')}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)   # released cleanly: nothing to take over
    finally:
        os.close(fd)              # closing the descriptor releases the lock


def outputs(params_files: list[str]) -> list[str]:
    """What a study replaces under reports/, relative to it (folders are replaced whole)."""
    names = [Path(pf).stem for pf in params_files]
    return ["notebooks/01_data.ipynb",
            *(f"notebooks/{nb}_{n}.ipynb" for n in names for nb in ("02_train", "03_analysis")),
            *(f"{kind}/{n}" for n in names for kind in ("runs", "figures")),
            "study.json", "calibration_published.json", "report_zh.md"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(stage: Path, reports_dir: Path) -> None:
    """Move each output named in the staging folder's COMPLETE marker into reports_dir, each old
    output first set aside as .<name>.old. Idempotent: run again after an interruption (a kill), it
    finishes what is left. An OSError (a full disk) puts back what had moved and re-raises: reports_dir
    is then as it was, and the staging folder, still complete, waits for the next study."""
    rels = json.loads((stage / COMPLETE).read_text())["outputs"]
    moved = []   # (src, dst, old) of the outputs moved so far
    try:
        for rel in rels:
            src, dst = stage / rel, reports_dir / rel
            old = dst.with_name(f".{dst.name}.old")
            if not src.exists():        # moved before an interruption
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            _remove(old)
            moved.append((src, dst, old))
            if dst.exists():
                os.replace(dst, old)
            os.replace(src, dst)
    except OSError as e:
        for src, dst, old in reversed(moved):   # this pass's moves, the one that failed included
            if dst.exists() and not src.exists():
                os.replace(dst, src)
            if old.exists():
                os.replace(old, dst)
        raise UserError(f"the study finished but moving its outputs into {reports_dir} failed ({e}); {reports_dir} "
                        f"is as it was and the finished study waits in {stage}: free some space and run `make "
                        "study` again (it moves them into place first)") from None
    for rel in rels:
        dst = reports_dir / rel
        _remove(dst.with_name(f".{dst.name}.old"))
    shutil.rmtree(stage)


def recover(reports_dir: Path = REPORTS_DIR) -> str | None:
    """A staging folder left by an earlier study: finish it if it was complete, else discard it."""
    stage = staging_dir(reports_dir)
    if not stage.exists():
        return None
    if (stage / COMPLETE).is_file():
        _move_into_place(stage, reports_dir)
        return "finished moving a completed earlier study into place"
    shutil.rmtree(stage)
    return "discarded an unfinished earlier study (reports/ kept its previous state)"


def run_study(params_files: list[str] | None = None, report_only: bool = False, reports_dir: Path = REPORTS_DIR,
              overrides: dict | None = None, out_dir: str | os.PathLike | None = None,
              train_parameters: dict | None = None, analysis_parameters: dict | None = None) -> Path:
    """Notebooks 01 -> 02 -> 03 for each params file, then the report; published into reports_dir
    only at the end. `overrides` are config keys for every notebook (the smoke's tiny settings);
    `out_dir` is where the training runs go (default: each params file's out_dir);
    `train_parameters` and `analysis_parameters` are 02_train's and 03_analysis's own parameters
    (min_test_acc, embedded_images)."""
    from .report import write_report

    reports_dir = Path(reports_dir)
    params_files = list(params_files or STUDY_PARAMS)
    if report_only:
        return write_report(reports_dir, PUBLISHED)
    # papermill's log_output goes through the "papermill" logger: show the notebooks' own
    # output (one line per epoch) on the terminal while they run.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dict(overrides or {}) | ({"out_dir": str(out_dir)} if out_dir else {})
    cfgs = {pf: load_config(pf, **overrides) for pf in params_files}  # a bad params file fails here, before any work
    if len({Path(pf).stem for pf in params_files}) != len(params_files):
        raise UserError(f"two params files publish under the same name: {params_files}")
    with study_lock(reports_dir):
        return _study(params_files, cfgs, reports_dir, overrides, train_parameters, analysis_parameters)


def _study(params_files, cfgs, reports_dir: Path, overrides: dict, train_parameters, analysis_parameters) -> Path:
    from .report import write_report

    note = recover(reports_dir)
    if note:
        print(f"study: {note}", flush=True)
    t0 = time.perf_counter()
    stage = staging_dir(reports_dir)
    made = set(outputs(params_files))                     # made afresh: not copied
    shutil.copytree(reports_dir, stage, symlinks=True, ignore=lambda d, names: [
        n for n in names if (Path(d) / n).relative_to(reports_dir).as_posix() in made])
    (stage / "notebooks").mkdir(exist_ok=True)
    execute("01_data", stage / "notebooks" / "01_data.ipynb", {"params_file": params_files[0]} | overrides)
    for pf, cfg in cfgs.items():
        name = Path(pf).stem
        run_name = f"{name}_{datetime.now():%Y%m%d_%H%M%S}"
        execute("02_train", stage / "notebooks" / f"02_train_{name}.ipynb",
                {"params_file": pf, "run_name": run_name} | overrides | (train_parameters or {}))
        execute("03_analysis", stage / "notebooks" / f"03_analysis_{name}.ipynb",
                {"run_dir": str(cfg.out_path / run_name), "publish_as": name, "reports_dir": str(stage)}
                | (analysis_parameters or {}))
    wall = time.perf_counter() - t0
    atomic_write_text(stage / "study.json", json.dumps(
        {"command": "make study", "params": params_files, "wall_s": round(wall, 1),
         "finished": datetime.now().isoformat(timespec="seconds")} | ({"overrides": overrides} if overrides else {}),
        indent=1))
    write_report(stage, PUBLISHED)
    atomic_write_text(stage / COMPLETE, json.dumps({"outputs": outputs(params_files)}))
    _move_into_place(stage, reports_dir)
    report = reports_dir / "report_zh.md"
    print(f"\nstudy done in {wall:.0f} s; report: {report}")
    return report


def tree_digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes under folder."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def smoke(scratch: str | os.PathLike | None = None, params_files: list[str] | None = None) -> Path:
    """The study's code path with SMOKE settings on a scratch copy of reports/ (default: a new
    temporary folder). Checks that the report was written there and that reports/ is untouched."""
    scratch = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="mnist-pairs-smoke-"))
    scratch.mkdir(parents=True, exist_ok=True)
    reports = scratch / "reports"
    if reports.exists():
        raise UserError(f"{reports} exists: give the smoke an empty scratch folder")
    before = tree_digest(REPORTS_DIR)
    t0 = time.perf_counter()
    shutil.copytree(REPORTS_DIR, reports, symlinks=True,
                    ignore=shutil.ignore_patterns(".*.old"))
    report = run_study(params_files, reports_dir=reports, overrides=SMOKE, out_dir=scratch / "experiments",
                       train_parameters=SMOKE_TRAIN, analysis_parameters=SMOKE_ANALYSIS)
    if tree_digest(REPORTS_DIR) != before:
        raise RuntimeError("the study smoke changed files under reports/: it must write only to its scratch folder")
    print(f"study smoke passed in {time.perf_counter() - t0:.0f} s; report: {report} (reports/ untouched)")
    return report


def publish_improved(reports_dir: Path = REPORTS_DIR) -> Path:
    """Publish the plan's model itself rather than `make study`'s rebuild of it: the `best` confirmation
    run on the seed the plan named (recipes.PUBLISHED_RUN) goes through notebook 03 to runs/improved/ and
    figures/improved/; then the report is rewritten. Needs that run's folder (`make confirm-best`)."""
    from ..errors import RunNotFound
    from ..paths import SWEEPS_DIR, resolve
    from .recipes import PUBLISHED_RUN
    from .report import write_report

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_dir = resolve(SWEEPS_DIR) / PUBLISHED_RUN["group"] / f"seed{PUBLISHED_RUN['seed']}"
    if not (run_dir / "results.json").is_file():
        raise RunNotFound(f"{run_dir} is not a finished run: the `best` confirmation has not run on this machine "
                          "(`make confirm-best`); `make study` trains the same model from "
                          f"{PUBLISHED_RUN['params']} instead")
    execute("03_analysis", reports_dir / "notebooks" / "03_analysis_improved.ipynb",
            {"run_dir": str(run_dir), "publish_as": PUBLISHED["improved"], "reports_dir": str(reports_dir)})
    return write_report(reports_dir, PUBLISHED)
