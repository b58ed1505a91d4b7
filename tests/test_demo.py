"""`make demo` (python -m mnist_pairs demo) serves notebooks/04_draw as a page; headless Chromium
(Debian's, driven by Playwright) draws a "1" on both pads, then a "1" and a "0", and reads the
probability and decision the page shows. A screenshot of each lands in the test's tmp folder."""
from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mnist_pairs.paths import PROJECT_ROOT, REPORTS_DIR

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed (`make browser` installs it as root)"),
    pytest.mark.skipif(not (REPORTS_DIR / "runs" / "seed_siamese" / "results.json").is_file(), reason="no published run"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, mnist_root):
    port, token = _free_port(), "test-token-0123456789"
    log = tmp_path_factory.mktemp("demo") / "voila.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mnist_pairs", "demo", "--port", str(port), "--token", token],
                                cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/?token={token}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(url, timeout=5).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        else:
            pytest.fail(f"the demo did not come up: {log.read_text()[-2000:]}")
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        with pytest.raises(urllib.error.HTTPError) as refused:         # no token: sent to the login page
            urllib.request.build_opener(NoRedirect).open(f"http://127.0.0.1:{port}/", timeout=5)
        assert refused.value.code in (302, 401, 403) and "login" in (refused.value.headers.get("Location") or "login")
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _draw(page, canvas, points) -> None:
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=4)
    page.mouse.up()


def _result(page, previous: str | None) -> dict:
    page.wait_for_function("(prev) => { const e = document.querySelector('.mnist-pairs-result[data-state=scored]');"
                           " return e && e.outerHTML !== prev; }", arg=previous, timeout=60_000)
    e = page.locator(".mnist-pairs-result[data-state=scored]")
    return {"html": e.evaluate("e => e.outerHTML"), "p": float(e.get_attribute("data-probability")),
            "same": e.get_attribute("data-same") == "1", "text": e.inner_text()}


ONE = [(0.5, 0.15), (0.5, 0.85)]
ZERO = [(0.5 + 0.3 * math.sin(t / 20 * 2 * math.pi), 0.5 - 0.35 * math.cos(t / 20 * 2 * math.pi)) for t in range(21)]


def test_the_page_draws_two_digits_and_shows_the_decision(page_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                    headless=True, args=FLAGS, viewport={"width": 1000, "height": 800})
        try:
            page = ctx.new_page()
            page.goto(page_url, timeout=120_000)
            page.wait_for_selector(".mnist-pairs-result", timeout=120_000)
            pads = page.locator("canvas")
            pads.first.wait_for(timeout=60_000)
            first, second = pads.nth(0), pads.nth(pads.count() - 1)
            _draw(page, first, ONE)
            _draw(page, second, ONE)
            ones = _result(page, None)
            page.screenshot(path=str(tmp_path / "one_one.png"))
            page.get_by_role("button", name=re.compile("清除")).click()
            page.wait_for_selector(".mnist-pairs-result[data-state=waiting]", timeout=60_000)
            _draw(page, first, ONE)
            _draw(page, second, ZERO)
            one_zero = _result(page, ones["html"])
            page.screenshot(path=str(tmp_path / "one_zero.png"))
        finally:
            ctx.close()
    assert ones["same"] and ones["p"] > 0.5 and "相同" in ones["text"], ones
    assert not one_zero["same"] and one_zero["p"] < 0.5 and "不同" in one_zero["text"], one_zero
    assert (tmp_path / "one_zero.png").stat().st_size > 10_000
