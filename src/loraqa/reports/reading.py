"""Which runs a report is about: the directory given to `loraqa report`, read through runs/.

A run directory (holds config.yaml), a sweep directory (reports/sweep.py), a directory of run
directories, or a `loraqa compare` of finished runs (its comparison.json names runs elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from loraqa.reports.source import ReportError, ReportSource
from loraqa.reports.sweep import is_sweep_directory, read_sweep
from loraqa.runs.files import CHANGES_FILE, COMPARISON_FILE, CONFIG_FILE, holds_run
from loraqa.runs.reading import read_json, read_jsonl
from loraqa.runs.record import read_run


def read_source(path: str | Path) -> ReportSource:
    """A run directory (holds config.yaml) or a directory of run directories; else ReportError."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory; give a run directory or a directory of runs")
    if holds_run(path):
        return ReportSource("run", path, [read_run(path)])
    children = sorted(p for p in path.iterdir() if p.is_dir() and holds_run(p))
    if is_sweep_directory(path):
        return read_sweep(path, [read_run(p) for p in children])
    if children:
        return ReportSource("comparison", path, [read_run(p) for p in children])
    existing = _existing_comparison(path)
    if existing is not None:
        return existing
    raise ReportError(
        f"{path}: holds no {CONFIG_FILE} and no subdirectory with one; give a run directory or a directory of runs"
    )


def _existing_comparison(path: Path) -> ReportSource | None:
    """A `loraqa compare RUN_DIR ...` of finished runs: its comparison.json names the runs, which live elsewhere."""
    problems: list[str] = []
    comparison = read_json(path / COMPARISON_FILE, problems)
    if not isinstance(comparison, dict) or comparison.get("source") != "existing":
        return None
    runs = [read_run(Path(d)) for d in comparison.get("runs_compared", []) if holds_run(d)]
    changes = read_jsonl(path / CHANGES_FILE, problems)
    return ReportSource("comparison", path, runs, {"comparison": comparison, "changes": changes}) if runs else None
