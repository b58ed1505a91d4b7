"""Shared fixtures: real MNIST in the project's data root (fetched once, verified); the CLI in
forked children of one interpreter that imported it (`forked_cli`)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

from mnist_pairs.config import Config
from mnist_pairs.subset import load_subset
from mnist_pairs.mnist import ensure_mnist
from mnist_pairs.paths import PROJECT_ROOT, data_root

QUIET = dict(log=lambda m: None)
# A tiny run of one epoch (1 thread: the CI runners have 2 cores and share them)
TINY = dict(epochs=1, train_pairs=512, test_pairs=200, val_pairs=200, val_images=100, heldout_pairs=0,
            batch_size=64, num_threads=1)


@pytest.fixture(scope="module", autouse=True)
def _keep_torch_threads():
    """Tiny runs set torch's intra-op threads to 1 for the process; give later modules theirs back."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def mnist_root():
    ensure_mnist()
    return data_root()


@pytest.fixture(scope="session")
def subset(mnist_root):
    return load_subset(Config(), log=lambda m: None)


@pytest.fixture
def no_glyph_warnings():
    """Fail on any 'Glyph … missing from font' warning raised inside the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing = [str(w.message) for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    assert not missing, f"missing glyphs: {missing[:5]}"


# A fresh interpreter per CLI call spends seconds importing torch and scikit-learn. The zygote
# imports what `python -m mnist_pairs train` and `compare` import once, then forks one child per call;
# each child runs mnist_pairs/__main__.py as `python -m` does, with its own stdout, stderr and
# exit status. test_forked_cli_matches_a_fresh_interpreter checks that nothing differs.
ZYGOTE = r"""
import json, os, runpy, sys, traceback
import mnist_pairs.cli, mnist_pairs.train, mnist_pairs.serve.compare
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["-m", *req["args"]]
            runpy.run_module("mnist_pairs", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@pytest.fixture(scope="session")
def forked_cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zygote")
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=PROJECT_ROOT)
    calls = []

    def run(*args) -> subprocess.CompletedProcess:
        out, err = folder / f"{len(calls)}.out", folder / f"{len(calls)}.err"
        calls.append(args)
        zygote.stdin.write(json.dumps({"args": list(map(str, args)), "stdout": str(out), "stderr": str(err)}) + "\n")
        zygote.stdin.flush()
        code = int(zygote.stdout.readline())
        return subprocess.CompletedProcess(["python", "-m", "mnist_pairs", *args], code, out.read_text(),
                                           err.read_text())

    yield run
    zygote.stdin.close()
    zygote.wait(timeout=60)
