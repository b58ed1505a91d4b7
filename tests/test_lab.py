"""The notebooks in JupyterLab, as a person uses them: JupyterLab on a free 127.0.0.1 port behind a
token, Debian's Chromium driven by Playwright. 02_train (quick parameters) runs from the Run menu to
the end: no error output, the progress bar and the figures rendered, the kernel idle. 03 and 04 open
with their stored outputs rendered. Screenshots land in the test's tmp folder.

The notebooks are copies in the tmp folder (JupyterLab saves what it runs); the library anchors every
path at the project root, so a copy runs as the original does.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from mnist_pairs.paths import NOTEBOOKS_DIR, REPORTS_DIR
from test_demo import CHROMIUM, FLAGS, _free_port

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed (`make browser` installs it as root)"),
    pytest.mark.skipif(not (REPORTS_DIR / "runs" / "seed_siamese" / "results.json").is_file(), reason="no published run"),
]
TOKEN = "lab-test-token-0123456789"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, mnist_root):
    """(base url, notebook folder, screenshot folder) of a JupyterLab server on copies of the notebooks."""
    root = tmp_path_factory.mktemp("lab")
    folder = root / "notebooks"
    folder.mkdir()
    for name in ("03_analysis", "04_draw"):
        shutil.copy(NOTEBOOKS_DIR / f"{name}.ipynb", folder)
    # 02 without its stored outputs: every prompt number and output the test sees comes from this run
    nb = nbformat.read(NOTEBOOKS_DIR / "02_train.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, folder / "02_train.ipynb")
    port = _free_port()
    log = root / "jupyter.log"
    args = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={folder}", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"] + (["--allow-root"] if os.getuid() == 0 else [])
    # user settings: every cell in the page (no windowing: the test reads all prompts and outputs), no news
    settings = root / "settings"
    for ext, values in (("notebook-extension/tracker", {"windowingMode": "none"}),
                        ("apputils-extension/notification", {"fetchNews": "false"})):
        path = settings / "@jupyterlab" / f"{ext}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=os.environ | {"JUPYTER_CONFIG_DIR": str(root / "config"),
                                                  "JUPYTERLAB_SETTINGS_DIR": str(settings)})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not come up: {log.read_text()[-2000:]}")
        with pytest.raises(urllib.error.HTTPError) as refused:          # no token: refused
            urllib.request.urlopen(f"{base}/api/contents", timeout=5)
        assert refused.value.code in (401, 403)
        yield base, folder, root
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def _open(browser, base: str, name: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # a workspace of its own, reset: only this notebook open (the default one restores earlier tabs)
    page.goto(f"{base}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    return page


def _accept_kernel_dialog(page) -> None:
    """JupyterLab asks which kernel to start when starting the notebook's own one took too long (seen on a
    loaded 2-core machine): accept its choice, the notebook's kernel, as a person would."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(state="visible", timeout=3_000)
    except PlaywrightTimeout:
        return
    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="hidden", timeout=30_000)


def _kernels(base: str) -> list[dict]:
    return json.loads(urllib.request.urlopen(f"{base}/api/kernels?token={TOKEN}", timeout=10).read())


STATUS = ("() => { const e = document.querySelector('.jp-Notebook-ExecutionIndicator');"
          " return e ? e.getAttribute('data-status') : null; }")   # the page's view of its kernel


def _wait_status(page, until, what: str, timeout: float, steady: float = 0.0) -> None:
    """Poll the notebook's kernel status as the page shows it until `until(status)` has held for `steady`
    seconds. (The server's /api/kernels execution_state stays "idle" while a cell trains: not usable.)"""
    deadline, since = time.monotonic() + timeout, None
    while True:
        if until(page.evaluate(STATUS)):
            since = since or time.monotonic()
            if time.monotonic() - since >= steady:
                return
        else:
            since = None
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s (status {page.evaluate(STATUS)})"
        time.sleep(0.25)


def test_02_train_runs_all_cells_from_the_menu(lab, browser):
    base, folder, shots = lab
    page = _open(browser, base, "02_train")
    _accept_kernel_dialog(page)
    _wait_status(page, lambda s: s == "idle", "the notebook's kernel was not ready", 120)   # Run All before that is lost
    started = ("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
               ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))")   # a cell queued, running or run
    for _ in range(3):   # a click the page drops while it settles is made again
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function(started, timeout=20_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            _accept_kernel_dialog(page)
    n_code = sum(c.cell_type == "code" for c in nbformat.read(folder / "02_train.ipynb", as_version=4).cells)
    try:
        page.wait_for_function(started, timeout=1_000)   # "Run All Cells did not start" otherwise
        # the run is over when the kernel has stayed idle (a cell that raises ends it early) and no cell waits
        _wait_status(page, lambda s: s == "idle", "the notebook did not finish", 600, steady=3)
        page.wait_for_function("() => ![...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
                               ".some(e => e.textContent.includes('*'))", timeout=30_000)
        assert [k["execution_state"] for k in _kernels(base)] == ["idle"]
    finally:
        page.screenshot(path=str(shots / "02_train.png"), full_page=True)
    before = (folder / "02_train.ipynb").stat().st_mtime_ns
    page.keyboard.press("Control+s")
    for _ in range(100):
        if (folder / "02_train.ipynb").stat().st_mtime_ns != before:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    saved = nbformat.read(folder / "02_train.ipynb", as_version=4)
    errors = [o for c in saved.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert all(c.execution_count for c in saved.cells if c.cell_type == "code"), "not every cell ran"
    assert len([c for c in saved.cells if c.cell_type == "code"]) == n_code
    assert not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                            has_text="Traceback").count()
    assert page.locator(".widget-hprogress, .jp-OutputArea-output progress").count() >= 1, "no progress bar rendered"
    figures = page.locator(".jp-RenderedImage img")
    assert figures.count() >= 2
    assert all(figures.nth(i).evaluate("img => img.complete && img.naturalWidth > 100") for i in range(figures.count()))
    page.close()


@pytest.mark.parametrize("name, shown", [("03_analysis", ".jp-RenderedImage img"), ("04_draw", ".jp-OutputArea-output")])
def test_stored_outputs_render(lab, browser, name, shown):
    base, _, shots = lab
    page = _open(browser, base, name)
    page.wait_for_selector(shown, state="attached", timeout=60_000)
    outputs = page.locator(shown)
    assert outputs.count() >= 1
    if name == "03_analysis":
        assert all(outputs.nth(i).evaluate("img => img.complete && img.naturalWidth > 100") for i in range(outputs.count()))
    else:
        assert page.locator(".jp-OutputArea-output", has_text="模型：").count() == 1
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.close()
