"""report.html rendered by headless Chromium (Debian's package, driven by Playwright): no console
errors, every image loaded, a loss-curve image present; plus `loraqa report` from the command line.

Skipped locally when chromium or playwright is missing; on CI (CI=true) that is a failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import browser_or_skip, open_page, page_images
from synthetic_runs import write_run

from loraqa.cli import main


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
    browser_or_skip()
    assert main(["report", str(comparison)]) == 0
    errors: list[str] = []
    with open_page((comparison / "report.html").as_uri(), errors, screenshot="report.png") as page:
        images = page_images(page)
        text = page.inner_text("body")
    assert errors == []
    assert len(images) == 3 and all(i["ok"] for i in images), images
    assert any("loss" in i["alt"].lower() and i["w"] == 1100 for i in images)
    assert "<script>alert(1)</script>" in text  # shown as text, not run
    assert "Decoding strategies" in text and "crashed" in text


def test_browser_missing_fails_on_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run on CI"):
        browser_or_skip("/nonexistent/chromium")
