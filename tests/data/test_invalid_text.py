"""Text that is not valid Unicode (a lone surrogate, which a JSON "\\ud800" escape decodes to) is a bad
record in every format: one `DataError` naming file, record and field, or skipped as `invalid_text`.
Tokenizers fail on such text, so letting it through would end a run (or a server batch) in a traceback."""

from __future__ import annotations

import pytest
from squad_builders import CONTEXT, load_error, load_ok, qa, squad, write, write_jsonl

LONE = "\ud800"


def jsonl_row(qid="q1", **fields) -> dict:
    return {"id": qid, "context": CONTEXT, "question": "Who won?", "answer": "Denver Broncos", **fields}


@pytest.mark.parametrize(
    "name, content, record, field",
    [
        ("x.json", squad(qa("q1", question=f"Who{LONE}?")), "q1", "'question'"),
        ("x.json", squad(qa("q1"), context=CONTEXT + LONE), "q1", "'context'"),
        ("x.json", squad(qa("q1"), title=f"Super{LONE}"), "q1", "'title'"),
        ("x.json", squad(qa(f"q{LONE}")), "data[0].paragraphs[0].qas[0]", "'id'"),  # not the bad id itself
        ("x.jsonl", [jsonl_row(question=f"Who{LONE}?")], "q1", "'question'"),
        ("x.jsonl", [jsonl_row(context=CONTEXT + "\udfff", answer="Broncos")], "q1", "'context'"),
        ("x.jsonl.gz", [jsonl_row(), jsonl_row("q2", question=LONE + "Who?")], "q2", "'question'"),
    ],
)
def test_a_lone_surrogate_is_a_one_line_error_naming_file_record_and_field(tmp_path, name, content, record, field):
    path = write_jsonl(tmp_path / name, content) if isinstance(content, list) else write(tmp_path / name, content)
    err = load_error(path)
    assert (err.path, err.record) == (str(path), record)
    assert field in err.problem and "lone surrogate U+D" in err.problem
    assert "\n" not in str(err)
    str(err).encode("utf-8")  # the message itself names the character, never holds it


def test_with_skip_invalid_such_records_are_counted_and_dropped(tmp_path):
    rows = [jsonl_row("a"), jsonl_row("b", question=LONE), jsonl_row("c", context=CONTEXT + LONE, answer="Broncos")]
    result = load_ok(write_jsonl(tmp_path / "x.jsonl", rows), skip_invalid=True)
    assert [r.id for r in result.records] == ["a"] and result.skipped == {"invalid_text": 2}
