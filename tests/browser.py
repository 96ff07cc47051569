"""Headless Chromium for the report and web-page tests: Debian's package driven by Playwright
with `executable_path` (never a browser download).

Locally a missing browser or playwright skips the test; on CI (CI=true) it is a failure, so a
broken install cannot turn the browser tests into silent skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LORAQA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = os.environ.get("LORAQA_REPORT_SCREENSHOT_DIR")  # keep screenshots to look at


def browser_or_skip(chromium: str | None = None):
    """playwright's `sync_playwright`, or skip (fail on CI) naming what is missing."""
    chromium = chromium or CHROMIUM
    problem = None
    if not Path(chromium).is_file():
        problem = f"{chromium} missing (apt-get install chromium; scripts/ci-deps.sh does it)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "python package playwright missing (pip install -e .[test])"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run on CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


@contextmanager
def open_page(url: str, errors: list[str], screenshot: str | None = None, viewport=(1280, 900)) -> Iterator:
    """A loaded page of `url`; console errors, page errors and failed requests go to `errors`.
    With `screenshot` (a file name) and LORAQA_REPORT_SCREENSHOT_DIR set, the page is kept as a PNG."""
    sync_playwright = browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(url, wait_until="load")
            yield page
            if screenshot and SCREENSHOT_DIR:
                Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(SCREENSHOT_DIR) / screenshot), full_page=True)
        finally:
            browser.close()


def page_images(page) -> list[dict]:
    """Every <img> of the page: its alt text, whether it loaded (complete, non-zero size), its width."""
    return page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}))"
    )
