"""Render a Document as GitHub-flavoured Markdown, linking the PNGs beside it by relative path.

`files_link` is the folder of the PNGs relative to report.md (report_files), so the report and
its folder can be moved or committed together.
"""

from __future__ import annotations

from loraqa.reports.document import Code, Document, Figure, Paragraph, Section, Table


def render_markdown(document: Document, files_link: str) -> str:
    parts = [f"# {_text(document.title)}\n", f"{_text(document.subtitle)}\n"]
    parts += [_section(s, files_link) for s in document.sections]
    return "\n".join(parts)


def _section(section: Section, files_link: str) -> str:
    hashes = "#" * min(max(section.level, 2), 6)
    return "\n".join([f"{hashes} {_text(section.title)}\n", *(_block(b, files_link) for b in section.blocks)])


def _block(block, files_link: str) -> str:
    if isinstance(block, Section):
        return _section(block, files_link)
    if isinstance(block, Paragraph):
        return f"_{_text(block.text)}_\n" if block.note else f"{_text(block.text)}\n"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        link = f"{files_link}/{block.path.name}"
        caption = f"\n\n{_text(block.caption)}" if block.caption else ""
        return f"![{_text(block.alt)}]({link}){caption}\n"
    if isinstance(block, Code):
        fence = "````" if "```" in block.text else "```"
        return f"{fence}\n{block.text}\n{fence}\n"
    raise TypeError(f"unknown report block {type(block).__name__}")


def _table(table: Table) -> str:
    lines = [f"**{_cell(table.caption)}**\n"] if table.caption else []
    lines.append("| " + " | ".join(_cell(h) for h in table.header) + " |")
    lines.append("|" + "|".join(" --- " for _ in table.header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A table cell on one line: pipes escaped, newlines as spaces, markup characters escaped."""
    return _text(" ".join(str(text).split())).replace("|", "\\|")


def _text(text: str) -> str:
    # Raw HTML in a prediction would render on GitHub; escaping <, > and & keeps it literal.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
