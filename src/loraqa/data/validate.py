"""Checks shared by every data format: field types, empty texts, answer spans, v1/v2 answers.

A check raises `RecordProblem(kind, problem)`. The format parsers catch it and hand it to
`collector.RecordCollector.reject`, which raises `DataError` (file, record, problem) or, with
`skip_invalid`, counts it under `kind` and drops the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loraqa.data.records import Answer, QARecord

# Problem kinds: the keys of `LoadResult.skipped`.
SCHEMA = "schema"  # a field is missing or has the wrong type
EMPTY_CONTEXT = "empty_context"
EMPTY_QUESTION = "empty_question"
EMPTY_ANSWER = "empty_answer"
CONTEXT_TOO_LONG = "context_too_long"
ANSWER_OUT_OF_RANGE = "answer_out_of_range"  # answer_start + len(text) falls outside the context
ANSWER_MISMATCH = "answer_mismatch"  # the context at answer_start is not the answer text
ANSWER_NOT_FOUND = "answer_not_found"  # a text-only answer does not occur in the context
NO_ANSWERS = "no_answers"  # an answerable question without answers
MISSING_IS_IMPOSSIBLE = "missing_is_impossible"  # a SQuAD v2 question without the flag
UNANSWERABLE_IN_V1 = "unanswerable_in_v1"  # is_impossible is true but version_2 is off
DUPLICATE_ID = "duplicate_id"
INVALID_TEXT = "invalid_text"  # a text holds a lone surrogate (a JSON "\ud800" escape): not encodable as UTF-8


class RecordProblem(Exception):
    """One record (or one paragraph/article of them) cannot be used."""

    def __init__(self, kind: str, problem: str):
        super().__init__(problem)
        self.kind = kind
        self.problem = problem


def schema_problem(problem: str) -> RecordProblem:
    return RecordProblem(SCHEMA, problem)


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages about wrong types."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def require_object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise schema_problem(f"{what} must be an object, not {type_name(value)}")
    return value


def require_str(obj: dict, key: str, owner: str) -> str:
    if key not in obj:
        raise schema_problem(f"{owner} has no '{key}'")
    value = obj[key]
    if not isinstance(value, str):
        raise schema_problem(f"'{key}' must be a string, not {type_name(value)}")
    return value


def require_list(obj: dict, key: str, owner: str) -> list:
    if key not in obj:
        raise schema_problem(f"{owner} has no '{key}'")
    value = obj[key]
    if not isinstance(value, list):
        raise schema_problem(f"'{key}' must be a list, not {type_name(value)}")
    return value


def optional_title(obj: dict) -> str:
    title = obj.get("title")
    if title is None:
        return ""
    if not isinstance(title, str):
        raise schema_problem(f"'title' must be a string, not {type_name(title)}")
    return title


def question_id(value: Any) -> str:
    """An id as a non-empty string; integer ids are accepted because many home-made files use them."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise schema_problem(f"'id' must be a string, not {type_name(value)}")
    if not value.strip():
        raise schema_problem("'id' is empty")
    return value


def record_label(obj: Any, where: str) -> str:
    """How errors name a record: its id when it has a usable one, else its position (`line 3`)."""
    qid = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(qid, int) and not isinstance(qid, bool):
        return str(qid)
    if isinstance(qid, str) and qid.strip():
        return qid
    return where


def check_context(context: str, max_context_chars: int) -> None:
    if not context.strip():
        raise RecordProblem(EMPTY_CONTEXT, "context is empty")
    if len(context) > max_context_chars:
        raise RecordProblem(
            CONTEXT_TOO_LONG,
            f"context has {len(context):,} characters, more than max_context_chars={max_context_chars:,}",
        )


def check_question(question: str) -> None:
    if not question.strip():
        raise RecordProblem(EMPTY_QUESTION, "question is empty")


def text_problem(text: str) -> str | None:
    """Why `text` is not text a tokenizer can take, or None when it is.

    Python strings may hold lone surrogates (JSON's "\\ud800" escape decodes to one, and so does an
    undecodable byte in a command-line argument); they cannot be encoded as UTF-8, and tokenizers
    fail on them. The message names the character by code point, never the character itself.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"holds a lone surrogate U+{ord(text[err.start]):04X} at character {err.start}, which is not valid Unicode text"
    return None


def check_record_text(record: QARecord) -> None:
    """Every text of a record is valid Unicode text (answers are spans of its context: checked with it)."""
    fields = [("id", record.id), ("title", record.title), ("context", record.context), ("question", record.question)]
    for name, text in fields:
        problem = text_problem(text)
        if problem:
            raise RecordProblem(INVALID_TEXT, f"'{name}' {problem}")


def answers_from_objects(items: list) -> list[tuple[str, int]]:
    """(text, answer_start) pairs from SQuAD answer objects [{"text": ..., "answer_start": ...}]."""
    pairs = []
    for i, item in enumerate(items):
        # Fast path first: this runs once per answer of every file loaded.
        text = item.get("text") if isinstance(item, dict) else None
        start = item.get("answer_start") if isinstance(item, dict) else None
        if type(text) is not str or type(start) is not int:
            raise _answer_object_problem(item, f"answers[{i}]")
        pairs.append((text, start))
    return pairs


def _answer_object_problem(item: Any, where: str) -> RecordProblem:
    try:
        item = require_object(item, where)
        require_str(item, "text", where)
        if "answer_start" not in item:
            return schema_problem(f"{where} has no 'answer_start'")
        _offset(item["answer_start"], f"{where}.answer_start")
    except RecordProblem as problem:
        return problem
    return schema_problem(f"{where} is not a valid answer object")  # unreachable: the fast path accepted it


def answers_from_columns(value: dict) -> list[tuple[str, int]]:
    """(text, answer_start) pairs from the Hugging Face layout {"text": [...], "answer_start": [...]}."""
    texts, starts = value.get("text"), value.get("answer_start")
    if not isinstance(texts, list) or not isinstance(starts, list):
        raise schema_problem("'answers' must hold lists 'text' and 'answer_start'")
    if len(texts) != len(starts):
        raise schema_problem(f"'answers' has {len(texts)} texts but {len(starts)} answer_starts")
    pairs = []
    for i, (text, start) in enumerate(zip(texts, starts, strict=True)):
        if not isinstance(text, str):
            raise schema_problem(f"answers.text[{i}] must be a string, not {type_name(text)}")
        pairs.append((text, _offset(start, f"answers.answer_start[{i}]")))
    return pairs


def _offset(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise schema_problem(f"{where} must be an integer, not {type_name(value)}")
    return value


def checked_answers(context: str, pairs: Sequence[tuple[str, int]]) -> tuple[Answer, ...]:
    """Answers whose `context[answer_start:answer_start + len(text)] == text`; raises otherwise."""
    answers = []
    for text, start in pairs:
        if not text.strip():
            raise RecordProblem(EMPTY_ANSWER, "answer text is empty")
        end = start + len(text)
        if start < 0 or end > len(context):
            raise RecordProblem(
                ANSWER_OUT_OF_RANGE,
                f"answer_start {start} of answer {_short(text)} is outside the context ({len(context)} characters)",
            )
        found = context[start:end]
        if found != text:
            raise RecordProblem(
                ANSWER_MISMATCH,
                f"answer {_short(text)} does not match the context at answer_start {start} "
                f"(the context there reads {_short(found)})",
            )
        answers.append(Answer(text, start))
    return tuple(answers)


def located_answer(context: str, text: str) -> Answer:
    """A text-only answer placed at its first occurrence in the context."""
    if not text.strip():
        raise RecordProblem(EMPTY_ANSWER, "answer text is empty")
    start = context.find(text)
    if start < 0:
        raise RecordProblem(ANSWER_NOT_FOUND, f"answer {_short(text)} does not occur in the context")
    return Answer(text, start)


def resolve_answers(answers: tuple[Answer, ...], *, is_impossible: bool | None, version_2: bool) -> tuple[Answer, ...]:
    """The answers a record keeps, given its `is_impossible` flag (None when the source has none).

    Unanswerable questions keep no answers (SQuAD v2 `plausible_answers` are not answers). Without
    a flag, a question with no answers is unanswerable in v2 and invalid in v1.
    """
    if is_impossible:
        if not version_2:
            raise RecordProblem(
                UNANSWERABLE_IN_V1, "question is unanswerable (is_impossible) but SQuAD v2 is off (version_2)"
            )
        return ()
    if answers:
        return answers
    if version_2 and is_impossible is None:
        return ()
    if is_impossible is False:
        raise RecordProblem(NO_ANSWERS, "question has no answers but is_impossible is false")
    raise RecordProblem(
        NO_ANSWERS, "question has no answers (SQuAD v1 questions need at least one; unanswerable ones need v2)"
    )


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
