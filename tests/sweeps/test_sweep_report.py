"""`loraqa report SWEEP_DIR`: a sweep directory is recognised and gets its own sections, from
hand-written sweep directories and from a real tiny sweep rendered in headless Chromium."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from browser import browser_or_skip, open_page, page_images
from sweep_helpers import cheap_overrides, sweep_command
from synthetic_sweep import MODULES, write_sweep

from loraqa.cli import main
from loraqa.reports.document import Code, Figure, Table
from loraqa.reports.reading import read_source
from loraqa.reports.sections import build_document
from loraqa.reports.sweep import heatmap_plan, leaderboard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reports"))
from png_checks import assert_real_plot  # noqa: E402

BEST = "lora.r=16 training.learning_rate=1e-3 lora.target_modules=attention"


def _sections(document) -> dict:
    return {s.title: s for s in document.sections}


def _blocks(section, kind):
    return [b for b in section.blocks if isinstance(b, kind)]


def test_a_sweep_directory_is_read_as_a_sweep_with_every_trial(tmp_path):
    source = read_source(write_sweep(tmp_path / "grid"))
    assert source.kind == "sweep" and len(source.runs) == 11
    trials = source.details["trials"]
    states = sorted(t.state for t in trials)
    assert states == ["COMPLETE"] * 10 + ["FAIL", "PRUNED"]  # the failed cell had no run directory
    failed = next(t for t in trials if t.state == "FAIL")
    assert failed.run is None and "out of memory" in failed.error and failed.params["lora.r"] == "16"
    best = next(t for t in trials if t.config == BEST)
    assert best.trainable == 8 * 16 * 32 and best.seed == 42  # counted from the adapter file's header
    plan = heatmap_plan(
        {k: v for k, v in __import__("loraqa.reports.sweep", fromlist=["axes_of"]).axes_of(trials).items()}
    )
    assert plan == ("lora.r", "training.learning_rate", "lora.target_modules")


def test_leaderboard_ranks_on_validation_pools_seeds_and_leaves_out_pruned_trials(tmp_path):
    source = read_source(write_sweep(tmp_path / "grid", seeds=(42, 43)))
    board = leaderboard(source.details["trials"], maximize=True)
    assert board[0]["config"] == BEST and len(board[0]["trials"]) == 2
    assert board[0]["mean"] == pytest.approx((87 + 87.5) / 2) and board[0]["range"] == pytest.approx(0.5)
    assert len(board) == 10 and all(
        "qv" not in r["config"] or "r=4 training.learning_rate=1e-4" not in r["config"] for r in board
    )
    assert board[-1]["mean"] == min(r["mean"] for r in board)
    assert leaderboard(source.details["trials"], maximize=False)[0]["config"] == board[-1]["config"]


def test_sweep_report_has_leaderboard_heatmaps_effects_failures_and_the_best_command(tmp_path):
    sweep_dir = write_sweep(tmp_path / "grid")
    document = build_document(read_source(sweep_dir), tmp_path / "files")
    assert document.title == "Sweep report: grid"
    sections = _sections(document)
    board = _blocks(sections["Leaderboard"], Table)[0]
    assert board.rows[0][1] == BEST and board.rows[0][3] == "87.000" and board.rows[0][7] == "82.00"  # test F1 beside
    heatmaps = _blocks(sections["Heatmaps"], Figure)
    assert len(heatmaps) == len(MODULES) and all("lora.target_modules=" in h.alt for h in heatmaps)
    for figure in heatmaps:
        assert_real_plot(figure.path, (figure_size(figure.path)))
    assert _blocks(sections["validation f1 against trainable parameters"], Figure)
    effects = _blocks(sections["Effect of each hyperparameter"], Table)[0]
    assert ["lora.r", "16", "3", "82.000", "77.000 to 87.000"] in effects.rows  # r=16: 3 COMPLETE trials (1 failed)
    failures = _blocks(sections["Failed and pruned trials"], Table)[0].rows
    assert {row[1] for row in failures} == {"FAIL", "PRUNED"}
    assert any("out of memory" in row[2] for row in failures) and any("pruned at step 20" in row[2] for row in failures)
    code = [c.text for c in _blocks(sections["Best configuration"], Code)]
    best_dir = sweep_dir / "r=16_learning_rate=1e-3_target_modules=attention_seed=42"
    assert code[0].startswith(f"loraqa train {best_dir / 'config.yaml'} ") and str(best_dir / "adapter") in code[1]
    assert "Runs" in sections and "Versions and commands" in sections


def figure_size(path: Path) -> tuple[int, int]:
    from png_checks import png_size

    size = png_size(path)
    assert size[0] >= 500 and size[1] >= 300
    return size


def test_an_unfinished_sweep_and_a_search_without_grid_axes_still_report(tmp_path):
    document = build_document(read_source(write_sweep(tmp_path / "running", with_summary=False)), tmp_path / "f1")
    lead = _sections(document)["Leaderboard"]
    assert any("No sweep.json" in b.text for b in lead.blocks if hasattr(b, "text"))
    assert len(_blocks(_sections(document)["Heatmaps"], Figure)) == 2


def test_sweep_report_tables_fit_a_1280_px_page(tmp_path):
    """The runs table (a column per swept key, long trial names) wraps within the page: neither the
    page nor a table's own box scrolls sideways at 1280 px."""
    browser_or_skip()
    sweep_dir = write_sweep(tmp_path / "sweep")
    assert main(["report", str(sweep_dir)]) == 0
    errors: list[str] = []
    with open_page((sweep_dir / "report.html").as_uri(), errors, viewport=(1280, 900)) as page:
        page_width = page.evaluate("document.documentElement.scrollWidth")
        boxes = page.evaluate(
            "Array.from(document.querySelectorAll('.scroll')).map(e => [e.scrollWidth, e.clientWidth])"
        )
        headers = page.evaluate("Array.from(document.querySelectorAll('th')).map(e => e.textContent)")
    assert errors == [] and page_width <= 1280
    assert boxes and all(scroll <= client for scroll, client in boxes), boxes
    assert "lora.target_modules" in headers  # wrapped with <wbr>, the text is unchanged


def test_a_real_tiny_sweep_reports_and_renders_in_headless_chromium(tiny_model_dir, qa_files, tmp_path):
    sweep_dir = tmp_path / "real"
    overrides = cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path)
    assert (
        main(
            sweep_command(
                overrides,
                sweep_dir,
                "real",
                "--grid",
                "lora.r=2,4",
                "training.learning_rate=1e-3,1e-2",
                "lora.target_modules=qv,attention",
            )
        )
        == 0
    )
    assert main(["report", str(sweep_dir)]) == 0
    # sweep.json (from the study) and the report (from the run directories) rank with one function: they agree
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    board = leaderboard(read_source(sweep_dir).details["trials"], maximize=True)
    assert [c["config"] for c in summary["configurations"]] == [r["config"] for r in board]
    for configuration, row in zip(summary["configurations"], board, strict=True):
        assert configuration["validation_mean"] == pytest.approx(row["mean"])
        assert configuration["validation_standard_error"] == pytest.approx(row["standard_error"])
        assert configuration["trainable_params"] == row["trainable_params"]
    assert summary["selection"]["rule"] == "best" and summary["best"]["config"] == board[0]["config"]
    browser_or_skip()
    errors: list[str] = []
    with open_page((sweep_dir / "report.html").as_uri(), errors, screenshot="sweep-report.png") as page:
        images = page_images(page)
        text = page.inner_text("body")
    assert errors == []
    assert images and all(i["ok"] for i in images), images
    assert sum("Heatmap" in i["alt"] for i in images) == 2  # one per module set
    assert "Sweep report: real" in text and "Leaderboard" in text and "Best configuration" in text
