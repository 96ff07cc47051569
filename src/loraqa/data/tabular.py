"""Split JSON Lines and CSV text into `(where, row)` pairs for `rows.parse_rows`.

Rows are numbered as a person would look for them: JSON Lines by line ("line 3", blank lines
counted), CSV by data row ("row 1" is the first row after the header).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loraqa.data.validate import schema_problem
from loraqa.errors import DataError
from loraqa.input_files import unique_keys

# CSV columns that may be left empty; an empty cell there means "not given" (None).
_OPTIONAL_COLUMNS = ("answers", "answer", "is_impossible", "title")


def jsonl_rows(text: str, path: str) -> list[tuple[str, Any]]:
    """One row per non-blank line. A line that is not JSON is an error for the whole file."""
    rows = []
    # Split on "\n" only: str.splitlines would also split on U+2028 and friends inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line, object_pairs_hook=unique_keys)))
        except json.JSONDecodeError as err:
            raise DataError(path, f"invalid JSON at column {err.colno}: {err.msg}", f"line {number}") from None
        except (ValueError, RecursionError) as err:
            raise DataError(path, f"invalid JSON: {err or type(err).__name__}", f"line {number}") from None
    return rows


def csv_rows(text: str, path: str) -> list[tuple[str, Any]]:
    """One row dict per CSV data row, keyed by the header.

    The header must name `id`, `context`, `question` and `answers` or `answer`. A row with more or
    fewer cells than the header becomes a schema problem for that row.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    with _unlimited_field_size():
        try:
            first = next(reader, None)
            header = [name.strip() for name in first or []]
            _check_header(header, path)
            rows = []
            for number, cells in enumerate(reader, start=1):
                if not cells:  # csv yields [] for a blank line
                    continue
                rows.append((f"row {number}", _row(header, cells)))
        except csv.Error as err:
            raise DataError(path, f"unreadable CSV: {err}", f"line {reader.line_num}") from None
    return rows


def _check_header(header: list[str], path: str) -> None:
    missing = [name for name in ("id", "context", "question") if name not in header]
    if "answers" not in header and "answer" not in header:
        missing.append("answers (or answer)")
    if missing:
        found = ", ".join(repr(name) for name in header)
        raise DataError(path, f"CSV header lacks column(s) {', '.join(missing)}; it has {found}")


def _row(header: list[str], cells: list[str]) -> Any:
    if len(cells) != len(header):
        return schema_problem(f"row has {len(cells)} cells but the header has {len(header)} columns")
    row: dict[str, Any] = dict(zip(header, cells, strict=True))
    for name in _OPTIONAL_COLUMNS:
        if name in row and row[name] == "":
            row[name] = None
    return row


@contextmanager
def _unlimited_field_size() -> Iterator[None]:
    # The whole text is already in memory, so csv's 128 KiB field limit protects nothing; lifting it
    # lets an over-long context be reported as `context_too_long` for its row, not as a broken file.
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)
