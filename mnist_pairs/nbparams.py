"""A notebook's parameters: exactly what its parameters cell and papermill's injected cell set.

    parameters = notebook_parameters()      # in the cell after the parameters cell
    cfg = load_config(parameters["params_file"], **config_keys)

In JupyterLab a person runs the notebook, types `threshold = 0.5` in a scratch cell, and runs the
config cell again: only the parameters cell may reach the config, not every plain global the
kernel holds. Importing this module in a kernel registers an IPython `pre_run_cell` hook that keeps
the source of every cell the kernel runs from then on (IPython's `In` misses cells run with
store_history=False, as nbval runs them); the notebooks import it in the cell before the parameters
cell. The parameters cell and papermill's injected cell each begin with a `# parameters` comment
(papermill writes "# Parameters"), so their last executions are found there, read as
`name = literal` lines and applied in the order they ran (papermill's -p values come after the cell
they override).
"""
from __future__ import annotations

import ast
from typing import Any

from .errors import ConfigError

MARK = "# parameters"  # a parameters cell's first line begins with it (case-insensitive)
CELLS: list[str] = []  # the source of every cell this kernel ran since the module was imported


def _record(info) -> None:
    CELLS.append(info.raw_cell)


def _install() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and _record not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", _record)


_install()


def is_parameters_cell(source: str) -> bool:
    lines = source.lstrip().splitlines()
    return bool(lines) and lines[0].strip().lower().startswith(MARK)


def read_cell(source: str) -> dict[str, Any]:
    """{name: value} of a parameters cell's `name = literal` lines; anything else is refused."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ConfigError(f"the parameters cell does not parse (line {e.lineno}: {e.msg})") from None
    values = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        try:
            value = ast.literal_eval(node.value) if isinstance(target, ast.Name) else None
        except ValueError:
            target = None
        if not isinstance(target, ast.Name):
            raise ConfigError(f"the parameters cell holds only `name = literal` lines; line {node.lineno} "
                              f"({ast.get_source_segment(source, node)!r}) is not one: move it to another cell")
        values[target.id] = value
    return values


def notebook_parameters(history: list[str] | None = None) -> dict[str, Any]:
    """The parameters of this kernel's notebook: the last runs of its parameters cell and of
    papermill's injected cell, applied in the order they ran. `history`: the executed cells' sources, oldest first (default:
    IPython's `In`)."""
    if history is None and CELLS:
        history = list(CELLS)
    if history is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise ConfigError("notebook_parameters() reads the kernel's history: call it in a notebook")
        history = list(shell.user_ns.get("In", []))
    own = injected = None
    for i, src in enumerate(history):
        if is_parameters_cell(src):
            if src.lstrip().startswith("# Parameters\n") or src.strip() == "# Parameters":
                injected = i   # papermill's cell
            else:
                own = i
    if own is None:
        raise ConfigError("run the parameters cell (the one that begins with `# parameters`) before this one")
    values = {}
    for i in sorted(i for i in (own, injected) if i is not None):   # the later one wins a shared name
        values.update(read_cell(history[i]))
    return values
