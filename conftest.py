"""How `make test` shares its tests between pytest-xdist workers (`--dist loadfile`).

Each test file runs whole on one worker (its module fixtures built once), and so do the notebooks, all
of them together and in file order: 03_analysis reads the run 02_train has just trained
(`Run.latest()`), so 02 must finish before 03 starts. With one group per notebook file, 03 can start on
the other worker first and find no run on a fresh clone (CI did). xdist's own `loadgroup` cannot
express this with pytest 9 (it renames `item._nodeid`, which pytest 9 no longer reads), hence a
scheduler of our own.
"""
from __future__ import annotations

NOTEBOOKS = "notebooks (in order, on one worker)"


def test_group(nodeid: str) -> str:
    """The unit of work a node id belongs to: its file, or one group for every notebook."""
    path = nodeid.split("::", 1)[0]
    return NOTEBOOKS if path.endswith(".ipynb") else path


test_group.__test__ = False  # a helper, not a test


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # xdist's own schedulers
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndNotebooks(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    return FilesAndNotebooks(config, log)
