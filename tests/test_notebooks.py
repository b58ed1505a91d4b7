"""The committed notebooks agree with their paired py:percent sources and stay explorable."""
from __future__ import annotations

import ast

import jupytext
import nbformat
import pytest

from mnist_pairs.config import load_config
from mnist_pairs.errors import ConfigError
from mnist_pairs.nbparams import notebook_parameters
from mnist_pairs.paths import PROJECT_ROOT

NOTEBOOKS = ("01_data", "02_train", "03_analysis", "04_draw")


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



def _run_cells(name: str, typed: str, after: list[str]) -> list:
    """Run notebook `name` as a person would in JupyterLab: its cells up to the config cell, with
    `typed` added at the end of the parameters cell, then the `after` cells. The outputs of
    [the config cell, *after]."""
    from nbclient import NotebookClient

    nb = jupytext.read(PROJECT_ROOT / "notebooks" / f"{name}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", ()))
    code[params].source += "\n" + typed
    nb.cells = code[:params + 2] + [nbformat.v4.new_code_cell(src) for src in after]
    NotebookClient(nb, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(PROJECT_ROOT / "notebooks")}}).execute()
    return [c.outputs for c in nb.cells[params + 1:]]


def test_a_config_key_typed_in_the_parameters_cell_takes_effect_and_a_misspelt_one_is_refused():
    cells = [c.source for c in jupytext.read(PROJECT_ROOT / "notebooks" / "02_train.py").cells if c.cell_type == "code"]
    params_cell = next(c for c in cells if c.startswith("# parameters"))
    config_cell = next(c for c in cells if "load_config(parameters" in c)
    show = config_cell.replace("tables.config_table(cfg)", "print(cfg.epochs, cfg.lr)")
    # typed below `run_name = ""`: it takes effect as `-p epochs 1 -p lr 0.002` does. Then as a person
    # exploring does: later cells make objects, a scratch cell sets plain values (not config keys, and a
    # config key), the config cell runs again: the same config. Then a key typed into the parameters
    # cell, run again, takes effect.
    out = _run_cells("02_train", "epochs = 1\nlr = 0.002", [
        "print(cfg.epochs, cfg.lr)",
        "data = object()\nthreshold = 0.5\nn_show = 8\nepochs = 7",
        show,
        params_cell + "\nepochs = 3",
        show])
    errors = [o for cell in out for o in cell if o["output_type"] == "error"]
    assert not errors, errors
    assert out[1][0]["text"].split() == ["1", "0.002"] and out[3][0]["text"].split() == ["1", "0.002"]
    assert out[5][0]["text"].split() == ["3", str(load_config("params/quick.yaml").lr)]
    # a misspelt key stops the config cell with the key it meant
    out = _run_cells("02_train", "epcohs = 1", [])
    assert out[0][-1]["output_type"] == "error" and out[0][-1]["ename"] == "ConfigError"
    assert "'epcohs' (did you mean 'epochs'?)" in out[0][-1]["evalue"]


def test_notebook_parameters_reads_the_parameters_and_papermill_cells_in_the_order_they_ran():
    own, injected = "# parameters\nepochs = 2\nlr = 0.1", "# Parameters\nepochs = 25\n"
    assert notebook_parameters([own, "x = 1", injected, "epochs = 9"]) == {"epochs": 25, "lr": 0.1}
    assert notebook_parameters([injected, own, "y = 2"]) == {"epochs": 2, "lr": 0.1}   # re-run after papermill's
    with pytest.raises(ConfigError, match="run the parameters cell"):
        notebook_parameters(["epochs = 2"])
    with pytest.raises(ConfigError, match=r"line 3 \('n = len\(x\)'\)"):
        notebook_parameters(["# parameters\nepochs = 2\nn = len(x)"])
