"""Flat question rows, as JSON Lines, CSV and Hugging Face datasets give them, into records.

A row is a dict with `id`, `context`, `question`, optional `title` and `is_impossible`, and the
answers in one of three shapes:

- `answers`: a list of {"text", "answer_start"} objects (SQuAD JSON style);
- `answers`: {"text": [...], "answer_start": [...]} (Hugging Face `squad` style);
- `answer`: the text alone, placed at its first occurrence in the context.

`answers` may also be a string (a CSV cell): JSON of either shape when it starts with `[` or `{`,
otherwise the answer text itself (`Ada`), placed at its first occurrence in the context like
`answer`. A key present with the value None (an empty CSV cell) means "no answers given".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loraqa.data.collector import RecordCollector
from loraqa.data.records import Answer, QARecord
from loraqa.data.validate import (
    RecordProblem,
    answers_from_columns,
    answers_from_objects,
    check_context,
    check_question,
    checked_answers,
    located_answer,
    optional_title,
    question_id,
    record_label,
    require_object,
    require_str,
    resolve_answers,
    schema_problem,
    type_name,
)
from loraqa.input_files import unique_keys

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass
class _Draft:
    """A row that passed every check that does not depend on SQuAD v1 vs v2."""

    where: str
    id: str
    context: str
    question: str
    title: str
    answers: tuple[Answer, ...]
    is_impossible: bool | None  # None: the row does not say


def parse_rows(rows: Iterable[tuple[str, Any]], sink: RecordCollector, *, version_2: bool | str) -> bool:
    """Add each `(where, row)` to `sink`, where `where` names it ("line 3"); return whether v2 is used.

    A row may also be a `RecordProblem` already found by the reader (a malformed CSV row). With
    version_2="auto" the rows are v2 when any says `is_impossible` or has no answers (Hugging Face
    `squad_v2` marks unanswerable questions only by empty answers).
    """
    drafts: list[_Draft | tuple[str, RecordProblem]] = []
    for where, row in rows:
        try:
            if isinstance(row, RecordProblem):
                raise row
            drafts.append(_draft(where, row, sink.max_context_chars))
        except RecordProblem as problem:
            drafts.append((record_label(row, where), problem))
    if version_2 == "auto":
        as_v2 = any(isinstance(d, _Draft) and (d.is_impossible is not None or not d.answers) for d in drafts)
    else:
        as_v2 = bool(version_2)
    # Second pass in file order, so the first bad row is the one reported.
    for draft in drafts:
        if isinstance(draft, tuple):
            sink.reject(*draft)
            continue
        try:
            answers = resolve_answers(draft.answers, is_impossible=draft.is_impossible, version_2=as_v2)
        except RecordProblem as problem:
            sink.reject(draft.id, problem)
            continue
        sink.add(QARecord(draft.id, draft.context, draft.question, answers, draft.title), draft.where)
    return as_v2


def _draft(where: str, row: Any, max_context_chars: int) -> _Draft:
    row = require_object(row, "row")
    if row.get("id") is None:
        raise schema_problem("row has no 'id'")
    qid = question_id(row["id"])
    context = require_str(row, "context", "row")
    question = require_str(row, "question", "row")
    check_context(context, max_context_chars)
    check_question(question)
    flag = _flag(row.get("is_impossible"))
    answers = () if flag else _answers(row, context)  # an unanswerable row's answers are not read
    return _Draft(where, qid, context, question, optional_title(row), answers, flag)


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise schema_problem(f"'is_impossible' must be true or false, not {_describe(value)}")


def _answers(row: dict, context: str) -> tuple[Answer, ...]:
    value = row.get("answers")
    if isinstance(value, str) and not value.lstrip().startswith(("[", "{")):
        return (located_answer(context, value),)  # a plain-text cell: one answer, found in the context
    if value is not None:
        return checked_answers(context, _answer_pairs(value, from_string=False))
    if row.get("answer") is not None:
        text = row["answer"]
        if not isinstance(text, str):
            raise schema_problem(f"'answer' must be a string, not {type_name(text)}")
        return (located_answer(context, text),)
    if "answers" in row or "answer" in row:
        return ()
    raise schema_problem("row has no 'answers' or 'answer'")


def _answer_pairs(value: Any, *, from_string: bool) -> list[tuple[str, int]]:
    if isinstance(value, str) and not from_string:
        try:
            parsed = json.loads(value, object_pairs_hook=unique_keys)
        except (ValueError, RecursionError) as err:
            raise schema_problem(f"'answers' is not valid JSON ({err or type(err).__name__})") from None
        return _answer_pairs(parsed, from_string=True)
    if isinstance(value, list):
        return answers_from_objects(value)
    if isinstance(value, dict):
        return answers_from_columns(value)
    raise schema_problem(
        f"'answers' must be a list of answer objects or {{'text': [...], 'answer_start': [...]}}, "
        f"not {type_name(value)}"
    )


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else type_name(value)
