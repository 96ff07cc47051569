"""`loraqa report DIR`: a run or a directory of runs as report.html and report.md with PNGs.

Reads run directories through runs/ (config, summary, metrics, predictions, train log); never
trains or loads a model. Layout written into DIR (names: runs/files.py):

    report.html        one self-contained file (CSS inline, PNGs as data URIs), opens offline
    report.md          the same report; its images link to report_files/
    report_files/*.png one PNG per figure

Modules, in reading order: reading (DIR -> ReportSource of runs/record.py's RunRecords; sweep.py
for a sweep directory), curves (log -> series), figures (one function per PNG), sections (the
report's blocks), html / markdown (renderers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loraqa.atomic import atomic_directory, write_text_atomic
from loraqa.reports.reading import read_source
from loraqa.reports.source import ReportError
from loraqa.runs.files import REPORT_FILES_DIR, REPORT_HTML, REPORT_MARKDOWN

__all__ = ["ReportError", "ReportPaths", "write_report"]


@dataclass
class ReportPaths:
    html: Path
    markdown: Path
    figures: list[Path]


def write_report(directory: str | Path) -> ReportPaths:
    """Write DIR/report.html, DIR/report.md and DIR/report_files/; replace an earlier report whole.

    Raises ReportError (one line) when DIR holds neither a run nor run directories.
    """
    # Imported here so `read_source`'s check fails fast, before matplotlib loads.
    from loraqa.reports.html import render_html
    from loraqa.reports.markdown import render_markdown
    from loraqa.reports.sections import build_document

    source = read_source(directory)
    path = source.path
    with atomic_directory(path / REPORT_FILES_DIR) as staging:
        document = build_document(source, staging)
        html = render_html(document)  # reads the PNGs while they are in staging
        markdown = render_markdown(document, REPORT_FILES_DIR)
        names = sorted(p.name for p in staging.glob("*.png"))
    write_text_atomic(path / REPORT_HTML, html)
    write_text_atomic(path / REPORT_MARKDOWN, markdown)
    return ReportPaths(path / REPORT_HTML, path / REPORT_MARKDOWN, [path / REPORT_FILES_DIR / n for n in names])
