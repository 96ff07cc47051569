"""Properties of the loaders for any input, checked with hypothesis.

1. Whatever the bytes, `load_records` returns records or raises `DataError`; nothing else escapes.
2. Valid records written as JSON Lines (or CSV) load back unchanged.
"""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from squad_builders import CONTEXT, qa, squad

from loraqa.data import Answer, LoadResult, QARecord, load_records
from loraqa.errors import DataError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys the loaders look for, so generated objects reach the deeper checks, not only "no 'data'".
KEYS = [
    "version",
    "data",
    "title",
    "paragraphs",
    "context",
    "qas",
    "id",
    "question",
    "answers",
    "answer",
    "text",
    "answer_start",
    "is_impossible",
    "plausible_answers",
]
SCALARS = st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=True) | st.text(max_size=12)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=10,
)
OPTIONS = st.fixed_dictionaries({"skip_invalid": st.booleans(), "version_2": st.sampled_from([True, False, "auto"])})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _load_or_data_error(path, options) -> None:
    try:
        result = load_records(str(path), **options)
    except DataError as err:
        assert str(err).startswith(str(path))
        return
    assert isinstance(result, LoadResult) and result.records
    assert all(isinstance(r, QARecord) for r in result.records)
    assert len({r.id for r in result.records}) == len(result.records)


def _base_document() -> dict:
    doc = squad(qa("a"), qa("b", "Who lost?", [("Carolina Panthers", 28)]), version="v2.0")
    for q in doc["data"][0]["paragraphs"][0]["qas"]:
        q["is_impossible"] = False
    doc["data"][0]["paragraphs"].append(
        {
            "context": CONTEXT,
            "qas": [
                {
                    "id": "c",
                    "question": "Who lost 51?",
                    "answers": [],
                    "is_impossible": True,
                    "plausible_answers": [{"text": "Denver", "answer_start": 4}],
                }
            ],
        }
    )
    return doc


def _paths(node, prefix=()):
    """Every (key or index) path into a JSON document, the root included."""
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, prefix + (key,))


BASE = _base_document()
PATHS = list(_paths(BASE))


def _mutate(doc, path, operation, value):
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if operation == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@FAST
@given(
    data=st.binary(max_size=300),
    suffix=st.sampled_from([".json", ".jsonl", ".csv", ".json.gz", ".jsonl.gz"]),
    compress=st.booleans(),
    options=OPTIONS,
)
def test_arbitrary_bytes_give_records_or_data_error(folder, data, suffix, compress, options):
    path = folder / f"bytes{suffix}"
    path.write_bytes(gzip.compress(data) if compress else data)
    _load_or_data_error(path, options)


@FAST
@given(
    path=st.sampled_from(PATHS),
    operation=st.sampled_from(["delete", "replace"]),
    value=JSON_VALUES,
    cut=st.none() | st.integers(0, 2000),
    options=OPTIONS,
)
def test_mutated_squad_json_gives_records_or_data_error(folder, path, operation, value, cut, options):
    doc = _mutate(json.loads(json.dumps(BASE)), path, operation, value)
    text = json.dumps(doc)  # NaN and Infinity included: Python's json reads them back
    target = folder / "mutated.json"
    target.write_text(text if cut is None else text[:cut], encoding="utf-8")
    _load_or_data_error(target, options)


@FAST
@given(
    rows=st.lists(st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=7) | JSON_VALUES, max_size=4),
    options=OPTIONS,
)
def test_arbitrary_rows_give_records_or_data_error(folder, rows, options):
    jsonl = folder / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _load_or_data_error(jsonl, options)
    table = folder / "rows.csv"
    out = io.StringIO()
    header = ["id", "context", "question", "answers", "answer", "is_impossible", "title"]
    writer = csv.writer(out)
    writer.writerow(header)
    for r in rows:
        writer.writerow([json.dumps(r.get(k)) if isinstance(r, dict) else "" for k in header])
    table.write_text(out.getvalue(), encoding="utf-8")
    _load_or_data_error(table, options)


@st.composite
def records(draw):
    """Valid records with unique ids, one to three answers each that match their context."""
    count = draw(st.integers(1, 5))
    result = []
    for i in range(count):
        context = draw(st.text(min_size=1, max_size=80).filter(str.strip))
        spans = draw(st.lists(st.tuples(st.integers(0, len(context) - 1), st.integers(1, 20)), min_size=1, max_size=3))
        answers = tuple(Answer(context[s : s + n], s) for s, n in spans if context[s : s + n].strip())
        if not answers:
            continue
        question = draw(st.text(min_size=1, max_size=40).filter(str.strip))
        title = draw(st.text(max_size=10))
        result.append(QARecord(f"id-{i}", context, question, answers, title))
    return result


@FAST
@given(original=records().filter(bool))
def test_valid_records_round_trip_through_jsonl(folder, original):
    path = folder / "round.jsonl"
    rows = [
        {
            "id": r.id,
            "title": r.title,
            "context": r.context,
            "question": r.question,
            "answers": [{"text": a.text, "answer_start": a.answer_start} for a in r.answers],
        }
        for r in original
    ]
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load_records(str(path))
    assert result.records == original and result.skipped == {} and result.version_2 is False


@FAST
@given(original=records().filter(bool))
def test_valid_records_round_trip_through_csv(folder, original):
    path = folder / "round.csv"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "title", "context", "question", "answers"])
    for r in original:
        answers = {"text": [a.text for a in r.answers], "answer_start": [a.answer_start for a in r.answers]}
        writer.writerow([r.id, r.title, r.context, r.question, json.dumps(answers)])
    path.write_text(out.getvalue(), encoding="utf-8")
    assert load_records(str(path)).records == original
