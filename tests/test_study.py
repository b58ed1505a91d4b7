"""The study's front door: notebook 03 on every model the study publishes, and a study that dies
halfway leaving reports/ as it was (staging folder moved into place only at the end).

The study smoke (`make study-smoke`: the whole study path with tiny settings) runs here, killed
in the middle and then run again to the end; and a move into place that was interrupted.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from mnist_pairs.study import pipeline as study
from mnist_pairs.analysis import ENCODER_FIGURES, Note, analyze
from mnist_pairs.cli import main
from mnist_pairs.errors import UserError
from mnist_pairs.paths import PROJECT_ROOT, PUBLISHED, REPORTS_DIR

CONCAT = REPORTS_DIR / "runs" / "seed_concat"
needs_concat = pytest.mark.skipif(not (CONCAT / "results.json").is_file(), reason="no published concat run")


@needs_concat
def test_a_concat_run_has_no_encoder_figures_and_says_so(mnist_root):
    a = analyze(CONCAT, log=lambda m: None)
    assert a.run.cfg.model == "concat"
    assert not set(ENCODER_FIGURES) & set(a.figures())
    for name in ENCODER_FIGURES:
        note = a.figure(name)
        assert isinstance(note, Note) and "不适用" in note.text and "concat" in note.text
    assert a.figure("confusion_matrix") is a.figures()["confusion_matrix"]
    with pytest.raises(KeyError, match="no figure 'embedings'"):
        a.figure("embedings")


def test_the_study_smoke_killed_between_notebooks_changes_nothing_and_the_next_study_finishes(tmp_path, mnist_root, capsys):
    """`make study-smoke` (the study's whole path with tiny settings, on a scratch copy of reports/),
    killed between two notebooks: its reports folder is as it was. The next study there discards
    the dead one's staging folder and runs all three params files, 01 -> 02 -> 03 -> report."""
    real_before = study.tree_digest(REPORTS_DIR)
    scratch = tmp_path / "smoke"
    reports, experiments = scratch / "reports", scratch / "experiments"
    stage = study.staging_dir(reports)
    proc = subprocess.Popen([sys.executable, "-m", "mnist_pairs", "study", "--smoke", "--scratch", str(scratch)],
                            cwd=PROJECT_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    next_notebook = stage / "notebooks" / "02_train_seed_siamese.ipynb"  # 01_data has finished by now
    try:
        deadline = time.monotonic() + 600
        while not next_notebook.exists():
            assert proc.poll() is None, f"the study ended (rc {proc.returncode}) before its second notebook"
            assert time.monotonic() < deadline, "the study took over 10 minutes to reach its second notebook"
            time.sleep(0.2)
        # a second study in the same place, meanwhile: refused at once, naming the running one, and
        # the running one's staging folder left alone
        with pytest.raises(UserError, match=rf"another study is running .*pid {proc.pid}, started .*left alone"):
            study.run_study(None, reports_dir=reports, overrides=study.SMOKE, out_dir=experiments)
        assert proc.poll() is None and (stage / "notebooks" / "01_data.ipynb").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                             # the study and its notebook kernels
        proc.wait()
    assert (stage / "notebooks" / "01_data.ipynb").is_file()            # it did work, in staging
    assert not (stage / study.COMPLETE).exists()
    assert study.tree_digest(reports) == real_before, "a killed study changed its reports folder"

    report = study.run_study(None, reports_dir=reports, overrides=study.SMOKE, out_dir=experiments,
                             train_parameters=study.SMOKE_TRAIN, analysis_parameters=study.SMOKE_ANALYSIS)
    said = capsys.readouterr().out
    assert f"took over the lock of a study that is no longer running (pid {proc.pid}" in said, said
    assert "discarded" in said and not stage.exists()
    assert report == reports / "report_zh.md" and "## " in report.read_text(encoding="utf-8")
    for name in PUBLISHED.values():                                          # every model published anew
        assert json.loads((reports / "runs" / name / "results.json").read_text())["epochs"] == study.SMOKE["epochs"]
    # notebook 03 on the concat run: each encoder figure's cell says why it does not apply, and
    # the run and its figures are published without them
    nb = nbformat.read(reports / "notebooks" / "03_analysis_seed_concat.ipynb", as_version=4)
    for name in ENCODER_FIGURES:
        cell = next(c for c in nb.cells if c.cell_type == "code" and f'figure("{name}")' in c.source)
        assert "不适用" in cell.outputs[0]["data"]["text/markdown"], cell.outputs
    assert sorted(p.name for p in (reports / "runs" / "seed_concat").iterdir()) == sorted(
        ["config.yaml", "history.json", "env.json", "results.json", "scores.npz", "best.pt", "digests.json"])
    figures = {p.stem for p in (reports / "figures" / "seed_concat").iterdir()}
    assert {"curves", "confusion_matrix", "roc_pr", "hardest_errors"} <= figures
    assert not figures & set(ENCODER_FIGURES)
    assert study.tree_digest(REPORTS_DIR) == real_before                   # reports/ itself never written


def _staged_outputs(tmp_path):
    """reports/ with every output of a one-params-file study as "old" (and a summary.json the study does
    not make), and a complete staging folder with every output "new"."""
    reports = tmp_path / "reports"
    outputs = study.outputs(["params/seed_siamese.yaml"])
    for rel in outputs + ["summary.json"]:
        p = reports / (f"{rel}/best.pt" if rel.startswith(("runs/", "figures/")) else rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("old")
    stage = study.staging_dir(reports)
    shutil.copytree(reports, stage)
    for rel in outputs:
        p = stage / (f"{rel}/best.pt" if rel.startswith(("runs/", "figures/")) else rel)
        p.write_text("new")
    (stage / study.COMPLETE).write_text(json.dumps({"outputs": outputs}))
    return reports, stage, outputs


def _replace_failing_at(monkeypatch, call: int, error: BaseException) -> list:
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == call:
            raise error
        real_replace(src, dst)

    monkeypatch.setattr(study.os, "replace", failing_replace)
    return calls


def _all_new(reports, outputs):
    for rel in outputs:
        p = reports / (f"{rel}/best.pt" if rel.startswith(("runs/", "figures/")) else rel)
        assert p.read_text() == "new", rel
    assert (reports / "summary.json").read_text() == "old"             # not the study's: left alone
    assert not list(reports.rglob(".*.old"))


def test_a_move_into_place_interrupted_is_finished_by_the_next_study(tmp_path, monkeypatch):
    """The staging folder is complete, the move into place dies after its first output: the next
    study (recover) finishes the move, so reports/ ends wholly new, never a mixture."""
    reports, stage, outputs = _staged_outputs(tmp_path)
    _replace_failing_at(monkeypatch, 3, KeyboardInterrupt("killed while moving"))  # old aside, new in, killed
    with pytest.raises(KeyboardInterrupt):
        study._move_into_place(stage, reports)
    monkeypatch.undo()
    assert (reports / outputs[0]).read_text() == "new" and (reports / "report_zh.md").read_text() == "old"

    assert "finished" in study.recover(reports)
    assert not stage.exists()
    _all_new(reports, outputs)


@pytest.mark.parametrize("call", [1, 2, 6])
def test_a_full_disk_while_moving_into_place_leaves_the_old_reports_and_the_next_study_finishes(
        tmp_path, monkeypatch, call):
    """ENOSPC in the move (setting an old output aside, or moving a new one in): the outputs moved so far
    are put back, reports/ is wholly as it was, and the error says so; the staging folder stays complete
    and the next study moves it into place."""
    import errno

    reports, stage, outputs = _staged_outputs(tmp_path)
    before = study.tree_digest(reports)
    _replace_failing_at(monkeypatch, call, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(UserError, match=r"No space left on device.*is as it was.*waits in"):
        study._move_into_place(stage, reports)
    monkeypatch.undo()
    assert study.tree_digest(reports) == before and (stage / study.COMPLETE).is_file()
    assert "finished" in study.recover(reports)
    assert not stage.exists()
    _all_new(reports, outputs)


def test_smoke_and_scratch_options_are_checked(tmp_path, capsys):
    assert main(["study", "--scratch", str(tmp_path)]) == 2
    assert "--scratch goes with --smoke only" in capsys.readouterr().err
    assert main(["study", "--smoke", "--report-only"]) == 2
    (tmp_path / "reports").mkdir()
    assert main(["study", "--smoke", "--scratch", str(tmp_path)]) == 2
    assert "give the smoke an empty scratch folder" in capsys.readouterr().err


@needs_concat
def test_compare_on_a_concat_run_says_it_needs_an_encoder(capsys):
    pictures = [str(REPORTS_DIR / "figures" / "seed_concat" / f"{n}.png") for n in ("curves", "roc_pr")]
    assert main(["compare", *pictures, "--run", str(CONCAT)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'concat' model" in err and "Siamese" in err, err
