"""How `make test` shares its tests between pytest-xdist workers (`-n 2 --dist loadfile`).

Each test file runs whole on one worker (its module fixtures built once), and so do the notebooks, all
of them together and in file order: 03_analysis reads the run 02_train has just trained
(`Run.latest()`), so 02 must finish before 03 starts. With one group per notebook file, 03 can start on
the other worker first and find no run on a fresh clone (CI did). xdist's own `loadgroup` cannot
express this with pytest 9 (it renames `item._nodeid`, which pytest 9 no longer reads), hence a
scheduler of our own.

The groups are handed out longest first (xdist would order them by their number of tests, which put the
study smoke and the JupyterLab test, one long test each, last: the other worker then sat idle for
minutes at the end). SECONDS are worker-seconds per group, from per-test times (`--junitxml`) on the project's AVX2-only
2-core EPYC; a group not listed counts as short. A wrong or stale figure changes only the order.
"""
from __future__ import annotations

import pytest

NOTEBOOKS = "notebooks (in order, on one worker)"
SECONDS = {"tests/test_train.py": 215, "tests/test_study.py": 185, "tests/test_benchmarks.py": 175,
           NOTEBOOKS: 150, "tests/test_lab.py": 140, "tests/test_deploy.py": 110,
           "tests/test_sweep_report.py": 100, "tests/test_errors.py": 70, "tests/test_distributed.py": 55,
           "tests/test_postgres.py": 50, "tests/test_faults.py": 42, "tests/test_confirmation.py": 31,
           "tests/test_demo.py": 22}


def work_unit(nodeid: str) -> str:
    """The unit of work a node id belongs to: its file, or one group for every notebook."""
    path = nodeid.split("::", 1)[0]
    return NOTEBOOKS if path.endswith(".ipynb") else path


def pytest_collection_modifyitems(config, items):
    """On xdist workers: the groups longest first, each group's items in their collected order (every
    worker collects, and all must agree: the sort is deterministic)."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: -SECONDS.get(work_unit(item.nodeid), 0))  # stable


@pytest.hookimpl(optionalhook=True)  # pytest without xdist (`-p no:xdist`) runs as before
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # xdist's own schedulers
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndNotebooks(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # keep the order the workers collected (longest first)
    return FilesAndNotebooks(config, log)
