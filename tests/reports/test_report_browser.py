"""report.html rendered by headless Chromium (Debian's package, driven by Playwright): no console
errors, every image loaded, a loss-curve image present; plus `loraqa report` from the command line.

Skipped locally when chromium or playwright is missing; on CI (CI=true) that is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from synthetic_runs import write_run

from loraqa.cli import main

CHROMIUM = os.environ.get("LORAQA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOT_DIR = os.environ.get("LORAQA_REPORT_SCREENSHOT_DIR")  # keep the screenshot to look at


def _browser_or_skip():
    problem = None
    if not Path(CHROMIUM).is_file():
        problem = f"{CHROMIUM} missing (apt-get install chromium; scripts/ci-deps.sh does it)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "python package playwright missing (pip install -e .[test])"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run on CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture
def comparison(tmp_path) -> Path:
    write_run(tmp_path / "cmp" / "minilm-r4", r=4, decodings=("greedy", "beam2"))
    write_run(tmp_path / "cmp" / "minilm-r16", r=16, baseline=False)
    write_run(tmp_path / "cmp" / "crashed", finished=False)
    return tmp_path / "cmp"


def test_cli_writes_the_report_and_refuses_a_non_run(comparison, tmp_path, capsys):
    assert main(["report", str(comparison)]) == 0
    assert f"report written to {comparison / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loraqa: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_report_renders_in_headless_chromium(comparison):
    sync_playwright = _browser_or_skip()
    assert main(["report", str(comparison)]) == 0
    html = comparison / "report.html"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(html.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}))"
            )
            text = page.inner_text("body")
            if SCREENSHOT_DIR:
                Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(SCREENSHOT_DIR) / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(images) == 3 and all(i["ok"] for i in images), images
    assert any("loss" in i["alt"].lower() and i["w"] == 1100 for i in images)
    assert "<script>alert(1)</script>" in text  # shown as text, not run
    assert "Decoding strategies" in text and "crashed" in text


def test_browser_missing_fails_on_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="cannot run on CI"):
        _browser_or_skip()
