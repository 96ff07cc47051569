"""Tiny SQuAD documents and files for the data tests, plus a check that loading wrote nothing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from loraqa.data import load_records
from loraqa.errors import DataError

CONTEXT = "The Denver Broncos beat the Carolina Panthers in Super Bowl 50 at Levi's Stadium."


def qa(qid: str = "q1", question: str = "Who won Super Bowl 50?", answers=(("Denver Broncos", 4),), **extra) -> dict:
    """One SQuAD question; `answers` as (text, answer_start) pairs."""
    return {"id": qid, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


def squad(*qas: dict, context: str = CONTEXT, version: str = "1.1", title: str = "Super_Bowl_50") -> dict:
    """A one-article, one-paragraph SQuAD document holding `qas` (default: one valid question)."""
    paragraph = {"context": context, "qas": list(qas or [qa()])}
    return {"version": version, "data": [{"title": title, "paragraphs": [paragraph]}]}


def write(path: Path, content: str | bytes | dict | list) -> Path:
    """Write text, bytes or JSON to `path`; gzip it when the name ends in .gz."""
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def load_error(path: Path | str, folder: Path | None = None, **options) -> DataError:
    """The `DataError` that loading `path` raises, after checking no file in its folder changed."""
    folder = folder or Path(path).parent
    before = _snapshot(folder)
    with pytest.raises(DataError) as info:
        load_records(str(path), **options)
    assert _snapshot(folder) == before, "loading must never write to the user's folder"
    return info.value


def load_ok(path: Path, **options):
    before = _snapshot(path.parent)
    result = load_records(str(path), **options)
    assert _snapshot(path.parent) == before, "loading must never write to the user's folder"
    return result
