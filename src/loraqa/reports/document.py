"""The report as plain blocks, built once and rendered twice (report.html and report.md).

Blocks hold plain text; each renderer escapes it for its own format, so a question containing
`<script>` or `|` shows as written in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Paragraph:
    text: str
    note: bool = False  # a remark about missing or unrecorded data, shown muted


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    named_rows: bool = False  # the first cell names the row (a run): kept on one line, bold


@dataclass
class Figure:
    path: Path  # a PNG written beside the report
    alt: str
    caption: str = ""


@dataclass
class Code:
    text: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)
