"""The committed notebooks agree with their paired py:percent sources and stay explorable."""
from __future__ import annotations

import ast

import jupytext
import nbformat
import pytest

from mnist_pairs.paths import PROJECT_ROOT

NOTEBOOKS = ("01_data", "02_train", "03_analysis")


def _cells(nb):
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_matches_its_paired_source(name):
    source = jupytext.read(PROJECT_ROOT / "notebooks" / f"{name}.py")
    committed = nbformat.read(PROJECT_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert _cells(committed) == _cells(source), f"run `make notebooks` after editing notebooks/{name}.py"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_cells_call_the_library_and_parameters_are_literals(name):
    nb = jupytext.read(PROJECT_ROOT / "notebooks" / f"{name}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", ())]
    assert len(params) == 1
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), ast.dump(node)
    for c in code:
        tree = ast.parse(c.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))], c.source
        lines = [l for l in c.source.splitlines() if l.strip() and not l.lstrip().startswith("#")]
        assert len(lines) <= 7, c.source   # short cells: a few library calls and a display
