"""JSON Lines and CSV sources: the answer shapes they accept and how their errors name rows."""

from __future__ import annotations

import csv
import io
import json

import pytest
from squad_builders import CONTEXT, load_error, load_ok, write, write_jsonl

from loraqa.data import Answer, load_records

WON = "Who won Super Bowl 50?"
LIST_ANSWERS = [{"text": "Denver Broncos", "answer_start": 4}]
HF_ANSWERS = {"text": ["Denver Broncos", "Broncos"], "answer_start": [4, 11]}


def row(qid="q1", **fields) -> dict:
    return {"id": qid, "context": CONTEXT, "question": WON, **fields}


def write_csv(path, header, rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return write(path, out.getvalue())


# --- JSON Lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answers, expected",
    [
        ({"answers": LIST_ANSWERS}, (Answer("Denver Broncos", 4),)),
        ({"answers": HF_ANSWERS}, (Answer("Denver Broncos", 4), Answer("Broncos", 11))),
        ({"answers": json.dumps(LIST_ANSWERS)}, (Answer("Denver Broncos", 4),)),
        ({"answer": "Broncos"}, (Answer("Broncos", 11),)),  # text only: placed at the first occurrence
    ],
    ids=["list", "hf-columns", "json-string", "text-only"],
)
def test_jsonl_answer_shapes(tmp_path, answers, expected):
    result = load_ok(write_jsonl(tmp_path / "x.jsonl", [row(**answers)]))
    assert result.records[0].answers == expected and result.version_2 is False


def test_jsonl_gz_title_and_blank_lines(tmp_path):
    path = write(tmp_path / "x.jsonl.gz", "\n" + json.dumps(row(answers=LIST_ANSWERS, title="SB50")) + "\n\n")
    record = load_records(str(path)).records[0]
    assert record.title == "SB50" and record.context == CONTEXT


def test_jsonl_v2_from_is_impossible_or_empty_answers(tmp_path):
    rows = [row("a", answers=LIST_ANSWERS), row("b", answers=LIST_ANSWERS, is_impossible=True), row("c", answers=[])]
    result = load_records(str(write_jsonl(tmp_path / "x.jsonl", rows)))
    assert result.version_2 is True
    assert [r.is_impossible for r in result.records] == [False, True, True]


def test_jsonl_v1_rejects_answerless_rows_when_forced(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [row("a", answers=LIST_ANSWERS), row("c", answers=[])])
    err = load_error(path, version_2=False)
    assert err.record == "c" and "no answers" in err.problem


def test_jsonl_invalid_line_is_a_file_error_with_its_line(tmp_path):
    path = write(tmp_path / "x.jsonl", json.dumps(row(answers=LIST_ANSWERS)) + '\n{"id": "q2", "context": \n')
    for skip_invalid in (False, True):
        err = load_error(path, skip_invalid=skip_invalid)
        assert err.record == "line 2" and "invalid JSON at column" in err.problem


@pytest.mark.parametrize(
    "bad, record, problem, kind",
    [
        (["not", "an", "object"], "line 2", "row must be an object, not a list", "schema"),
        ({"context": CONTEXT, "question": WON, "answer": "Broncos"}, "line 2", "row has no 'id'", "schema"),
        (row("q2"), "q2", "row has no 'answers' or 'answer'", "schema"),
        (row("q2", answer="Patriots"), "q2", "answer 'Patriots' does not occur in the context", "answer_not_found"),
        (row("q2", answer=" "), "q2", "answer text is empty", "empty_answer"),
        (row("q2", answer=4), "q2", "'answer' must be a string", "schema"),
        (row("q2", answers={"text": ["a"], "answer_start": []}), "q2", "1 texts but 0 answer_starts", "schema"),
        (row("q2", answers="[{"), "q2", "'answers' is not valid JSON", "schema"),
        (row("q2", answers="[" * 100_000), "q2", "'answers' is not valid JSON", "schema"),
        (row("q2", answers=7), "q2", "'answers' must be a list of answer objects", "schema"),
        (row("q2", answers=[{"text": "Broncos", "answer_start": 3}]), "q2", "does not match", "answer_mismatch"),
        (row("q2", answers=LIST_ANSWERS, is_impossible="maybe"), "q2", "true or false, not 'maybe'", "schema"),
        (row("q2", answers=LIST_ANSWERS, question=""), "q2", "question is empty", "empty_question"),
        (row("q2", answers=LIST_ANSWERS, context=""), "q2", "context is empty", "empty_context"),
        (row("q2", answers=LIST_ANSWERS, title=[1]), "q2", "'title' must be a string", "schema"),
        (row("q1", answers=LIST_ANSWERS), "q1", "duplicate id at line 2: first used at line 1", "duplicate_id"),
    ],
)
def test_jsonl_record_errors(tmp_path, bad, record, problem, kind):
    path = write_jsonl(tmp_path / "x.jsonl", [row("q1", answers=LIST_ANSWERS), bad])
    err = load_error(path)
    assert err.path == str(path) and err.record == record and problem in err.problem
    result = load_records(str(path), skip_invalid=True)
    assert result.skipped == {kind: 1} and [r.id for r in result.records] == ["q1"]


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_answers_column_holds_json_in_either_shape(tmp_path):
    path = write_csv(
        tmp_path / "x.csv",
        ["id", "title", "context", "question", "answers"],
        [["a", "SB50", CONTEXT, WON, json.dumps(LIST_ANSWERS)], ["b", "", CONTEXT, WON, json.dumps(HF_ANSWERS)]],
    )
    result = load_ok(path)
    assert result.records[0].answers == (Answer("Denver Broncos", 4),)
    assert result.records[1].answers == (Answer("Denver Broncos", 4), Answer("Broncos", 11))
    assert [r.title for r in result.records] == ["SB50", ""] and result.version_2 is False


def test_csv_answer_column_and_is_impossible(tmp_path):
    context = CONTEXT.replace("Stadium.", 'Stadium,\nin "Santa Clara".')  # a quoted multi-line cell
    path = write_csv(
        tmp_path / "x.csv",
        ["id", "context", "question", "answer", "is_impossible"],
        [["a", context, WON, "Santa Clara", "false"], ["b", context, "Who won Super Bowl 51?", "", "TRUE"]],
    )
    result = load_records(str(path))
    assert result.version_2 is True
    assert result.records[0].answers == (Answer("Santa Clara", context.index("Santa Clara")),)
    assert result.records[1].is_impossible


def test_csv_header_must_name_the_columns(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["id", "text", "question"], [["a", CONTEXT, WON]])
    err = load_error(path, skip_invalid=True)
    assert err.record is None
    assert "lacks column(s) context, answers (or answer)" in err.problem and "'text'" in err.problem


def test_csv_errors_name_the_row(tmp_path):
    lines = [
        "id,context,question,answer",
        f'a,"{CONTEXT}",{WON},Broncos',
        f'b,"{CONTEXT}"',  # too few cells
        f',"{CONTEXT}",{WON},Broncos',  # no id
    ]
    path = write(tmp_path / "x.csv", "\n".join(lines) + "\n")
    err = load_error(path)
    assert err.record == "row 2" and "row has 2 cells but the header has 4 columns" in err.problem
    result = load_records(str(path), skip_invalid=True)
    assert result.skipped == {"schema": 2} and [r.id for r in result.records] == ["a"]


def test_csv_row_without_id_is_named_by_number(tmp_path):
    lines = ["id,context,question,answer", f'a,"{CONTEXT}",{WON},Broncos', f',"{CONTEXT}",{WON},Broncos']
    path = write(tmp_path / "x.csv", "\n".join(lines) + "\n")
    err = load_error(path)
    assert err.record == "row 2" and "'id' is empty" in err.problem


def test_csv_context_beyond_the_csv_field_limit(tmp_path):
    long_context = "x" * 200_000 + " " + CONTEXT
    path = write_csv(tmp_path / "x.csv", ["id", "context", "question", "answer"], [["a", long_context, WON, "Broncos"]])
    limit = csv.field_size_limit()
    assert len(load_records(str(path), max_context_chars=300_000).records) == 1
    err = load_error(path)
    assert err.record == "a" and "more than max_context_chars=100,000" in err.problem
    assert csv.field_size_limit() == limit  # the module-wide limit is restored


def test_csv_gz(tmp_path):
    path = write_csv(tmp_path / "x.csv.gz", ["id", "context", "question", "answer"], [["a", CONTEXT, WON, "Broncos"]])
    assert load_records(str(path)).records[0].answers == (Answer("Broncos", 11),)


def test_csv_answers_cell_may_be_the_plain_answer_text(tmp_path):
    path = write_csv(
        tmp_path / "x.csv",
        ["id", "context", "question", "answers"],
        [["a", CONTEXT, WON, "Denver Broncos"], ["b", CONTEXT, "When?", "50"]],  # "50" is text, not a number
    )
    result = load_ok(path)
    assert result.records[0].answers == (Answer("Denver Broncos", 4),)
    assert result.records[1].answers == (Answer("50", CONTEXT.index("50")),)  # the first occurrence


def test_csv_plain_answer_text_not_in_the_context_names_the_row(tmp_path):
    path = write_csv(
        tmp_path / "x.csv",
        ["id", "context", "question", "answers"],
        [["a", CONTEXT, WON, "Broncos"], ["q7", CONTEXT, WON, "Ada Lovelace"]],
    )
    err = load_error(path)
    assert err.record == "q7" and "answer 'Ada Lovelace' does not occur in the context" in err.problem
    assert "number" not in err.problem and "JSON" not in err.problem
