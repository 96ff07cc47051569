"""Render a Document as one self-contained HTML file: inline CSS, PNGs as base64 data URIs.

No script, no external stylesheet, font or image: the file opens offline, and can be mailed or
attached as it is. All text is escaped here, so predictions and questions cannot inject markup.
"""

from __future__ import annotations

import base64
import re
from html import escape

from loraqa.reports.document import Code, Document, Figure, Paragraph, Section, Table

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.7em; margin-bottom: 0.1em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.08em; margin-top: 1.4em; }
.subtitle { color: #666; margin-top: 0; }
.note { color: #666; font-size: 0.92em; }
.scroll { overflow-x: auto; margin: 0.6em 0 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #d8d8d8; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
tbody tr:nth-child(even) { background: #fafafa; }
td { max-width: 28em; overflow-wrap: break-word; }
table.named td:first-child { max-width: 16em; font-weight: 600; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.6em 0.8em; white-space: pre-wrap; overflow-wrap: anywhere; border-radius: 4px; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""


def render_html(document: Document) -> str:
    body = "".join(_section(s) for s in document.sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(document.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{escape(document.title)}</h1>\n<p class="subtitle">{escape(document.subtitle)}</p>\n'
        f"{body}</body>\n</html>\n"
    )


def _section(section: Section) -> str:
    level = min(max(section.level, 2), 6)
    inner = "".join(_block(b) for b in section.blocks)
    return f"<section>\n<h{level}>{escape(section.title)}</h{level}>\n{inner}</section>\n"


def _block(block) -> str:
    if isinstance(block, Section):
        return _section(block)
    if isinstance(block, Paragraph):
        css = ' class="note"' if block.note else ""
        return f"<p{css}>{_inline(block.text)}</p>\n"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        caption = f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(block.alt)}">{caption}</figure>\n'
    if isinstance(block, Code):
        return f"<pre><code>{escape(block.text)}</code></pre>\n"
    raise TypeError(f"unknown report block {type(block).__name__}")


def _table(table: Table) -> str:
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = "".join(f"<th>{_breakable(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{_breakable(c)}</td>" for c in row) + "</tr>\n" for row in table.rows)
    css = ' class="named"' if table.named_rows else ""
    return f'<div class="scroll"><table{css}>{caption}<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody></table></div>\n'


# Where a long name may wrap: after a dot, underscore or equals sign before a letter, as in config
# keys and trial names ("lora.target_modules", "r=16_learning_rate=1e-3"), never inside a number.
_NAME_BREAK = re.compile(r"([._=])(?=[A-Za-z])")


def _breakable(text: str) -> str:
    """Escaped text that may wrap between the parts of a name (<wbr>: copied text is unchanged), so a
    wide table (a sweep's runs) fits the page instead of stretching past it."""
    return _NAME_BREAK.sub(r"\1<wbr>", escape(text))


def _inline(text: str) -> str:
    """Escape, then turn `backticks` into <code> (the only markup paragraphs use)."""
    parts = text.split("`")
    return "".join(f"<code>{escape(p)}</code>" if i % 2 else escape(p) for i, p in enumerate(parts))
