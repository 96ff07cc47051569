"""The official SQuAD JSON layout, v1.1 and v2.0.

    {"version": "1.1" | "v2.0",
     "data": [{"title": ..., "paragraphs": [{"context": ...,
               "qas": [{"id", "question", "answers": [{"text", "answer_start"}],
                        "is_impossible" (v2 only), "plausible_answers" (v2, ignored)}]}]}]}

A broken article or paragraph drops all of its questions; the record named in errors is then its
position, e.g. `data[3].paragraphs[2]`, because it has no question id.
"""

from __future__ import annotations

import json
from typing import Any

from loraqa.data.collector import RecordCollector
from loraqa.data.records import QARecord
from loraqa.data.validate import (
    MISSING_IS_IMPOSSIBLE,
    RecordProblem,
    answers_from_objects,
    check_context,
    check_question,
    checked_answers,
    optional_title,
    question_id,
    record_label,
    require_list,
    require_object,
    require_str,
    resolve_answers,
    schema_problem,
    type_name,
)
from loraqa.errors import DataError
from loraqa.input_files import unique_keys


def parse_squad_json(text: str, sink: RecordCollector, *, version_2: bool | str) -> bool:
    """Add every question of a SQuAD JSON document to `sink`; return whether it is read as SQuAD v2.

    With version_2="auto" the file is v2 when its "version" is "v2.0" or any question has
    "is_impossible"; a v2 file must then give "is_impossible" on every question. Invalid JSON and
    a missing "data" list are errors for the whole file, whatever `sink.skip_invalid` says.
    """
    root = decode_json(text, sink.path)
    articles = _articles(root, sink.path)
    file_is_v2 = _declares_v2(root, articles)
    as_v2 = file_is_v2 if version_2 == "auto" else bool(version_2)
    for i, article in enumerate(articles):
        _parse_article(f"data[{i}]", article, sink, as_v2=as_v2, flag_required=file_is_v2)
    return as_v2


def decode_json(text: str, path: str) -> Any:
    """`json.loads`, with the error position in a `DataError`."""
    try:
        return json.loads(text, object_pairs_hook=unique_keys)  # a key given twice is refused, not overwritten
    except json.JSONDecodeError as err:
        problem = f"invalid JSON at line {err.lineno} column {err.colno} (char {err.pos}): {err.msg}"
        if err.msg == "Extra data":
            problem += "; one JSON object per line is JSON Lines, name the file *.jsonl"
        raise DataError(path, problem) from None
    except (ValueError, RecursionError) as err:
        # ValueError: an integer longer than Python's digit limit; RecursionError: absurd nesting.
        raise DataError(path, f"invalid JSON: {err or type(err).__name__}") from None


def _articles(root: Any, path: str) -> list:
    if not isinstance(root, dict):
        raise DataError(path, f"a SQuAD JSON file must be an object with a 'data' list, not {type_name(root)}")
    if "data" not in root:
        raise DataError(path, "not SQuAD JSON: the top-level object has no 'data' list")
    if not isinstance(root["data"], list):
        raise DataError(path, f"'data' must be a list of articles, not {type_name(root['data'])}")
    return root["data"]


def _declares_v2(root: dict, articles: list) -> bool:
    if str(root.get("version", "")).lower().lstrip("v").startswith("2"):
        return True
    # Defensive walk: the structure has not been validated yet.
    for article in articles:
        for paragraph in _list_field(article, "paragraphs"):
            for qa in _list_field(paragraph, "qas"):
                if isinstance(qa, dict) and "is_impossible" in qa:
                    return True
    return False


def _list_field(obj: Any, key: str) -> list:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def _question_count(obj: Any) -> int:
    """How many questions an article or paragraph holds, as far as its structure can tell."""
    if isinstance(obj, dict) and "qas" in obj:
        return len(_list_field(obj, "qas"))
    return sum(len(_list_field(p, "qas")) for p in _list_field(obj, "paragraphs"))


def _parse_article(where: str, article: Any, sink: RecordCollector, *, as_v2: bool, flag_required: bool) -> None:
    try:
        article = require_object(article, "article")
        title = optional_title(article)
        paragraphs = require_list(article, "paragraphs", "article")
    except RecordProblem as problem:
        sink.reject(where, problem, _question_count(article))
        return
    for j, paragraph in enumerate(paragraphs):
        _parse_paragraph(f"{where}.paragraphs[{j}]", paragraph, title, sink, as_v2=as_v2, flag_required=flag_required)


def _parse_paragraph(
    where: str, paragraph: Any, title: str, sink: RecordCollector, *, as_v2: bool, flag_required: bool
) -> None:
    try:
        paragraph = require_object(paragraph, "paragraph")
        context = require_str(paragraph, "context", "paragraph")
        qas = require_list(paragraph, "qas", "paragraph")
        check_context(context, sink.max_context_chars)
    except RecordProblem as problem:
        sink.reject(where, problem, _question_count(paragraph))
        return
    for k, qa in enumerate(qas):
        qa_where = f"{where}.qas[{k}]"
        try:
            record = _record(qa, context, title, as_v2=as_v2, flag_required=flag_required)
        except RecordProblem as problem:
            sink.reject(record_label(qa, qa_where), problem)
            continue
        sink.add(record, qa_where)


def _record(qa: Any, context: str, title: str, *, as_v2: bool, flag_required: bool) -> QARecord:
    qa = require_object(qa, "question")
    if "id" not in qa:
        raise schema_problem("question has no 'id'")
    qid = question_id(qa["id"])
    question = require_str(qa, "question", "question")
    check_question(question)
    flag = qa.get("is_impossible")
    if flag is None and flag_required:
        raise RecordProblem(
            MISSING_IS_IMPOSSIBLE, "question has no 'is_impossible' (every question in a SQuAD v2 file needs it)"
        )
    if flag is not None and not isinstance(flag, bool):
        raise schema_problem(f"'is_impossible' must be true or false, not {type_name(flag)}")
    answers = ()
    if not flag:  # an unanswerable question's answers are not read at all
        items = require_list(qa, "answers", "question")
        answers = checked_answers(context, answers_from_objects(items))
    answers = resolve_answers(answers, is_impossible=flag, version_2=as_v2)
    return QARecord(id=qid, context=context, question=question, answers=answers, title=title)
