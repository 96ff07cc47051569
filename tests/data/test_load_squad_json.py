"""Official SQuAD JSON (v1.1 and v2.0): parsing, every record-level error, and skip_invalid counts."""

from __future__ import annotations

import pytest
from squad_builders import CONTEXT, load_error, load_ok, qa, squad, write

from loraqa.data import Answer, load_records


def test_v1_file_gives_records_with_all_answers(tmp_path):
    answers = [("Denver Broncos", 4), ("Denver Broncos", 4), ("Broncos", 11)]
    doc = squad(qa("a", answers=answers), qa("b", "Who lost?", [("Carolina Panthers", 28)]))
    result = load_ok(write(tmp_path / "dev.json", doc))
    assert [r.id for r in result.records] == ["a", "b"]
    first = result.records[0]
    assert first.context == CONTEXT and first.title == "Super_Bowl_50"
    assert first.question == "Who won Super Bowl 50?"
    # Duplicate answers are kept: the official dev set counts them (34,726 answers).
    assert first.answers == (Answer("Denver Broncos", 4), Answer("Denver Broncos", 4), Answer("Broncos", 11))
    assert result.version_2 is False and result.skipped == {} and result.source == str(tmp_path / "dev.json")


def test_gzipped_file_reads_like_plain(tmp_path):
    doc = squad(qa("a"), qa("b"))
    plain = load_records(str(write(tmp_path / "x.json", doc)))
    packed = load_records(str(write(tmp_path / "x.json.gz", doc)))
    assert plain.records == packed.records


def test_v2_file_by_version_ignores_plausible_answers(tmp_path):
    plausible = [{"text": "Carolina Panthers", "answer_start": 28}]
    impossible = qa("b", "Who lost Super Bowl 51?", answers=(), is_impossible=True, plausible_answers=plausible)
    doc = squad(qa("a", is_impossible=False), impossible, version="v2.0")
    result = load_records(str(write(tmp_path / "v2.json", doc)))
    assert result.version_2 is True
    assert result.records[0].answers == (Answer("Denver Broncos", 4),)
    assert result.records[1].answers == () and result.records[1].is_impossible


def test_v2_detected_from_is_impossible_without_version(tmp_path):
    doc = squad(qa("a", is_impossible=False), qa("b", answers=(), is_impossible=True), version="1.1")
    assert load_records(str(write(tmp_path / "v2.json", doc))).version_2 is True


def test_v2_impossible_question_needs_no_answers_key(tmp_path):
    impossible = {"id": "b", "question": "Who lost Super Bowl 51?", "is_impossible": True}
    result = load_records(str(write(tmp_path / "v2.json", squad(qa("a", is_impossible=False), impossible))))
    assert result.records[1].is_impossible


def test_forcing_v2_on_a_v1_file_makes_answerless_questions_unanswerable(tmp_path):
    path = write(tmp_path / "v1.json", squad(qa("a"), qa("b", answers=())))
    result = load_records(str(path), version_2=True)
    assert result.version_2 is True and result.records[1].is_impossible
    assert "no answers" in str(load_error(path))  # the same file read as v1 is invalid


def test_forcing_v1_on_a_v2_file_rejects_unanswerable_questions(tmp_path):
    doc = squad(qa("a", is_impossible=False), qa("b", answers=(), is_impossible=True), version="v2.0")
    path = write(tmp_path / "v2.json", doc)
    err = load_error(path, version_2=False)
    assert err.record == "b" and "is_impossible" in err.problem and "version_2" in err.problem
    result = load_records(str(path), version_2=False, skip_invalid=True)
    assert result.version_2 is False and [r.id for r in result.records] == ["a"]
    assert result.skipped == {"unanswerable_in_v1": 1}


def _doc_with(change) -> dict:
    doc = squad(qa("good"), qa("q1", "Who lost?", [("Carolina Panthers", 28)]))
    change(doc)
    return doc


def _paragraph(doc):
    return doc["data"][0]["paragraphs"][0]


def _qa(doc):  # the second question, "q1"
    return _paragraph(doc)["qas"][1]


# name: (change to a valid document, record named in the error, skipped kind, questions dropped,
#        words the problem must contain)
RECORD_ERRORS = {
    "article not an object": (
        lambda d: d["data"].insert(0, "oops"),
        "data[0]",
        "schema",
        1,
        "article must be an object",
    ),
    "article without paragraphs": (
        lambda d: d["data"][0].pop("paragraphs"),
        "data[0]",
        "schema",
        1,
        "article has no 'paragraphs'",
    ),
    "title not a string": (
        lambda d: d["data"][0].update(title=3),
        "data[0]",
        "schema",
        2,
        "'title' must be a string",
    ),
    "paragraph without context": (
        lambda d: _paragraph(d).pop("context"),
        "data[0].paragraphs[0]",
        "schema",
        2,
        "paragraph has no 'context'",
    ),
    "paragraph without qas": (
        lambda d: _paragraph(d).pop("qas"),
        "data[0].paragraphs[0]",
        "schema",
        1,
        "paragraph has no 'qas'",
    ),
    "context not a string": (
        lambda d: _paragraph(d).update(context=["x"]),
        "data[0].paragraphs[0]",
        "schema",
        2,
        "'context' must be a string, not a list",
    ),
    "whitespace context": (
        lambda d: _paragraph(d).update(context=" \n\t"),
        "data[0].paragraphs[0]",
        "empty_context",
        2,
        "context is empty",
    ),
    "qa not an object": (
        lambda d: _paragraph(d)["qas"].__setitem__(1, 7),
        "data[0].paragraphs[0].qas[1]",
        "schema",
        1,
        "question must be an object, not a number",
    ),
    "qa without id": (
        lambda d: _qa(d).pop("id"),
        "data[0].paragraphs[0].qas[1]",
        "schema",
        1,
        "question has no 'id'",
    ),
    "id not a string": (
        lambda d: _qa(d).update(id=None),
        "data[0].paragraphs[0].qas[1]",
        "schema",
        1,
        "'id' must be a string, not null",
    ),
    "qa without question": (
        lambda d: _qa(d).pop("question"),
        "q1",
        "schema",
        1,
        "question has no 'question'",
    ),
    "qa without answers": (
        lambda d: _qa(d).pop("answers"),
        "q1",
        "schema",
        1,
        "question has no 'answers'",
    ),
    "answers not a list": (
        lambda d: _qa(d).update(answers="Carolina"),
        "q1",
        "schema",
        1,
        "'answers' must be a list, not a string",
    ),
    "answer_start not an integer": (
        lambda d: _qa(d)["answers"][0].update(answer_start="28"),
        "q1",
        "schema",
        1,
        "answers[0].answer_start must be an integer",
    ),
    "answer without text": (
        lambda d: _qa(d)["answers"][0].pop("text"),
        "q1",
        "schema",
        1,
        "answers[0] has no 'text'",
    ),
    "empty question": (
        lambda d: _qa(d).update(question="   "),
        "q1",
        "empty_question",
        1,
        "question is empty",
    ),
    "empty answer text": (
        lambda d: _qa(d)["answers"][0].update(text=""),
        "q1",
        "empty_answer",
        1,
        "answer text is empty",
    ),
    "answer_start past the end": (
        lambda d: _qa(d)["answers"][0].update(answer_start=len(CONTEXT)),
        "q1",
        "answer_out_of_range",
        1,
        "answer_start 81 of answer 'Carolina Panthers' is outside the context (81 characters)",
    ),
    "negative answer_start": (
        lambda d: _qa(d)["answers"][0].update(answer_start=-1),
        "q1",
        "answer_out_of_range",
        1,
        "is outside the context",
    ),
    "answer_start off by one": (
        lambda d: _qa(d)["answers"][0].update(answer_start=27),
        "q1",
        "answer_mismatch",
        1,
        "answer 'Carolina Panthers' does not match the context at answer_start 27 "
        "(the context there reads ' Carolina Panther')",
    ),
    "answerable question without answers": (
        lambda d: _qa(d).update(answers=[]),
        "q1",
        "no_answers",
        1,
        "question has no answers",
    ),
    "duplicate id": (
        lambda d: _qa(d).update(id="good"),
        "good",
        "duplicate_id",
        1,
        "duplicate id at data[0].paragraphs[0].qas[1]: first used at data[0].paragraphs[0].qas[0]",
    ),
}


@pytest.mark.parametrize("case", RECORD_ERRORS, ids=list(RECORD_ERRORS))
def test_record_error_names_file_record_and_problem(tmp_path, case):
    change, record, _, _, problem = RECORD_ERRORS[case]
    path = write(tmp_path / "bad.json", _doc_with(change))
    err = load_error(path)
    assert err.path == str(path) and err.record == record and problem in err.problem
    assert str(err).startswith(f"{path}: record {record}: ")


@pytest.mark.parametrize("case", RECORD_ERRORS, ids=list(RECORD_ERRORS))
def test_skip_invalid_counts_the_dropped_questions_by_kind(tmp_path, case):
    change, _, kind, dropped, _ = RECORD_ERRORS[case]
    doc = _doc_with(change)
    doc["data"].append(squad(qa("other"))["data"][0])  # something always survives
    result = load_ok(write(tmp_path / "bad.json", doc), skip_invalid=True)
    assert result.skipped == {kind: dropped}
    assert "other" in [r.id for r in result.records]


def test_context_longer_than_the_limit(tmp_path):
    path = write(tmp_path / "long.json", squad())
    err = load_error(path, max_context_chars=20)
    assert err.record == "data[0].paragraphs[0]" and "81 characters, more than max_context_chars=20" in err.problem
    assert len(load_records(str(path), max_context_chars=len(CONTEXT)).records) == 1


def test_v2_file_needs_is_impossible_on_every_question(tmp_path):
    doc = squad(qa("a", is_impossible=False), qa("b"), version="v2.0")
    err = load_error(write(tmp_path / "v2.json", doc))
    assert err.record == "b" and "no 'is_impossible'" in err.problem and "SQuAD v2" in err.problem
    result = load_records(str(tmp_path / "v2.json"), skip_invalid=True)
    assert result.skipped == {"missing_is_impossible": 1}


def test_is_impossible_must_be_boolean(tmp_path):
    err = load_error(write(tmp_path / "v2.json", squad(qa("a", is_impossible="no"), version="v2.0")))
    assert err.record == "a" and "'is_impossible' must be true or false" in err.problem


def test_v2_answerable_question_without_answers(tmp_path):
    doc = squad(qa("a", is_impossible=False), qa("b", answers=(), is_impossible=False), version="v2.0")
    err = load_error(write(tmp_path / "v2.json", doc))
    assert err.record == "b" and "no answers but is_impossible is false" in err.problem


def test_first_bad_record_in_file_order_is_reported(tmp_path):
    doc = squad(qa("a"), qa("b", question=""), qa("c", answers=[("x", 0)]))
    assert load_error(write(tmp_path / "bad.json", doc)).record == "b"


def test_skip_invalid_sums_several_kinds(tmp_path):
    doc = squad(qa("a"), qa("b", question=""), qa("c", answers=[("x", 0)]), qa("d", answers=[("y", 0)]), qa("a"))
    result = load_records(str(write(tmp_path / "bad.json", doc)), skip_invalid=True)
    assert [r.id for r in result.records] == ["a"]
    assert result.skipped == {"empty_question": 1, "answer_mismatch": 2, "duplicate_id": 1}


def test_integer_ids_become_strings(tmp_path):
    result = load_records(str(write(tmp_path / "ids.json", squad(qa(7)))))
    assert result.records[0].id == "7"
