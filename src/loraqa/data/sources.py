"""Where questions come in: `load_records` turns any supported source into validated `QARecord`s.

    source                          read by
    squad-v1.1:train / :dev         squad_json (files shipped in bundled/squad/)
    *.json, *.json.gz               squad_json (official SQuAD v1.1 / v2.0 layout)
    *.jsonl, *.jsonl.gz             tabular.jsonl_rows -> rows
    *.csv, *.csv.gz                 tabular.csv_rows -> rows
    hub:NAME[:SPLIT]                hub -> rows

Every bad input is a `loraqa.errors.DataError` naming the file, the record and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from loraqa.data.bundled import BUNDLED, bundled_path, is_bundled
from loraqa.data.collector import RecordCollector
from loraqa.data.hub import PREFIX as HUB_PREFIX
from loraqa.data.hub import hub_rows
from loraqa.data.reading import read_text
from loraqa.data.records import QARecord
from loraqa.data.rows import parse_rows
from loraqa.data.squad_json import parse_squad_json
from loraqa.data.tabular import csv_rows, jsonl_rows
from loraqa.errors import DataError

# suffix -> format; matched case-insensitively against the end of the file name
SUFFIXES = {
    ".json": "squad",
    ".json.gz": "squad",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".csv": "csv",
    ".csv.gz": "csv",
}


@dataclass
class LoadResult:
    records: list[QARecord]  # in source order
    skipped: dict[str, int]  # problem kind (see data.validate) -> questions dropped; empty unless skip_invalid
    source: str  # as given
    version_2: bool  # whether the source was read as SQuAD v2 (unanswerable questions allowed)


def load_records(
    source: str | os.PathLike,
    *,
    skip_invalid: bool = False,
    version_2: bool | Literal["auto"] = "auto",
    max_context_chars: int = 100_000,
) -> LoadResult:
    """Read and validate every question of `source`; the user's files are only ever read.

    `source` is a bundled name (`squad-v1.1:train`, `squad-v1.1:dev`), a file path (.json/.json.gz
    SQuAD JSON, .jsonl/.jsonl.gz, .csv/.csv.gz) or `hub:NAME[:SPLIT]`. `version_2` is True, False or
    "auto" (detect from the source). Each invalid record (bad schema, empty context/question/answer,
    answer span not matching the context, answerable question without answers, duplicate id,
    context longer than `max_context_chars`) raises `DataError`, or with `skip_invalid` is dropped
    and counted by kind in `LoadResult.skipped`. A missing, unreadable, non-UTF-8 or non-JSON file,
    an unknown file type, and a source left with no records are errors whatever `skip_invalid` says.
    """
    source = os.fspath(source)
    if version_2 not in (True, False, "auto"):
        raise ValueError(f"version_2 must be True, False or 'auto', not {version_2!r}")
    if max_context_chars < 1:
        raise ValueError(f"max_context_chars must be positive, not {max_context_chars}")
    if source.startswith(HUB_PREFIX):
        sink = RecordCollector(source, skip_invalid=skip_invalid, max_context_chars=max_context_chars)
        as_v2 = parse_rows(hub_rows(source), sink, version_2=version_2)
    else:
        path = bundled_path(source) if is_bundled(source) else Path(source).expanduser()
        sink = RecordCollector(str(path), skip_invalid=skip_invalid, max_context_chars=max_context_chars)
        as_v2 = _parse_file(path, _format(source, path), sink, version_2)
    return LoadResult(records=sink.finish(), skipped=sink.skipped, source=source, version_2=as_v2)


def _format(source: str, path: Path) -> str:
    name = path.name.lower()
    for suffix, file_format in SUFFIXES.items():
        if name.endswith(suffix):  # no suffix ends another, so the order does not matter
            return file_format
    accepted = ", ".join(SUFFIXES)
    bundled = ", ".join(BUNDLED)
    raise DataError(
        source,
        f"unknown kind of source; accepted: a file ending in {accepted}, a bundled name ({bundled}) "
        f"or {HUB_PREFIX}NAME[:SPLIT]",
    )


def _parse_file(path: Path, file_format: str, sink: RecordCollector, version_2: bool | str) -> bool:
    text = read_text(path)
    if file_format == "squad":
        return parse_squad_json(text, sink, version_2=version_2)
    rows = jsonl_rows(text, sink.path) if file_format == "jsonl" else csv_rows(text, sink.path)
    return parse_rows(rows, sink, version_2=version_2)
