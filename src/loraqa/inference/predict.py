"""`loraqa predict`'s questions in and answers out: one question about a context, or every line of
a JSONL file, answered by `inference.answer.answer`.

Inputs pass the data layer's record checks (data/validate.py), `data.max_context_chars` included,
so a request costs no more than a training record may. An adapter trained on SQuAD v2 may answer
"no answer": such rows say `"no_answer": true` with an empty `answer`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from loraqa.atomic import write_text_exclusive
from loraqa.config.schema import DataConfig
from loraqa.data.collector import RecordCollector
from loraqa.data.reading import read_text
from loraqa.data.records import QARecord
from loraqa.data.tabular import jsonl_rows
from loraqa.data.validate import (
    CONTEXT_TOO_LONG,
    RecordProblem,
    check_context,
    check_question,
    check_record_text,
    question_id,
    record_label,
    require_object,
    require_str,
)
from loraqa.errors import DataError, RunDirError
from loraqa.inference.answer import Answer

NO_ANSWER_TEXT = "(no answer)"


def read_questions(path: str, data: DataConfig) -> list[QARecord]:
    """JSONL lines with `question` and `context` (and optionally `id`, else the line number).

    Each line is checked as a data file's record is (types, empty texts, `data.max_context_chars`,
    duplicate ids); errors name the file and the line or id (`DataError`).
    """
    sink = RecordCollector(path, skip_invalid=False, max_context_chars=data.max_context_chars)
    for where, row in jsonl_rows(read_text(Path(path)), path):
        number = where.split()[-1]
        try:
            record = _record(row, number, data.max_context_chars)
        except RecordProblem as problem:
            sink.reject(record_label(row, where), _with_hint(problem))
            continue
        sink.add(record, where)
    return sink.finish()


def question_record(question: str, context: str, data: DataConfig, qid: str = "q1") -> QARecord:
    """One question about a context as a record, checked as `read_questions` checks a line;
    raises `RecordProblem`, whose message names the field ("question is empty"), for the caller
    to word for its own inputs (CLI flags, API parameters)."""
    record = _record({"question": question, "context": context}, qid, data.max_context_chars)
    check_record_text(record)  # an undecodable byte in an argument arrives as a lone surrogate
    return record


def command_line_question(question: str, context: str, data: DataConfig) -> QARecord:
    """The --question/--context pair as a record (`question_record`); errors name the flag."""
    try:
        return question_record(question, context, data)
    except RecordProblem as problem:
        raise DataError(
            "--context" if "context" in problem.problem else "--question", _with_hint(problem).problem
        ) from None


def _record(row, default_id: str, max_context_chars: int) -> QARecord:
    row = require_object(row, "line")
    qid = question_id(row["id"]) if row.get("id") is not None else default_id
    context = require_str(row, "context", "line")
    question = require_str(row, "question", "line")
    check_context(context, max_context_chars)
    check_question(question)
    return QARecord(id=qid, context=context, question=question)


def _with_hint(problem: RecordProblem) -> RecordProblem:
    if problem.kind != CONTEXT_TOO_LONG:
        return problem
    return RecordProblem(problem.kind, f"{problem.problem}; to allow it, add data.max_context_chars=N to the command")


def print_answers(answers: list[Answer], output: str | None) -> None:
    """JSON lines to `output` (a new file), or to stdout; one answer alone as a line for people."""
    rows = [a.prediction_row() for a in answers]
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if output:
        try:
            write_text_exclusive(output, text)  # never over a file, folder or link already there
        except FileExistsError:
            raise RunDirError(f"{output} exists (or is a link); --output must name a new file") from None
        except OSError as exc:
            raise RunDirError(f"cannot write {output}: {exc.strerror}") from None
        print(f"wrote {len(rows)} answers to {output}", file=sys.stderr)
    elif len(answers) == 1:
        only = answers[0]
        shown = NO_ANSWER_TEXT if only.no_answer else only.text
        if only.abstained:
            shown = "(abstained: confidence below --min-confidence)"
        print(f"{shown}\t(confidence {only.confidence:.3f})")
    else:
        sys.stdout.write(text)
