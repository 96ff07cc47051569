"""`loraqa predict`: answer one question about a context, or every line of a JSONL file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from loraqa.config.schema import RunConfig
from loraqa.data.records import QARecord
from loraqa.errors import DataError, RunDirError
from loraqa.evaluation.runner import predict_settings
from loraqa.models.inference import ReadyModel
from loraqa.runs.atomic import write_text_exclusive


def read_questions(path: str) -> list[QARecord]:
    """JSONL lines with `question` and `context` (and optionally `id`); errors name the line."""
    file = Path(path)
    if not file.is_file():
        raise DataError(path, "file not found")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not valid UTF-8 (byte {exc.start})") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON ({exc.msg}, column {exc.colno})", record=f"line {number}") from None
        if not isinstance(row, dict):
            raise DataError(path, "each line must be a JSON object", record=f"line {number}")
        for key in ("question", "context"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(path, f"missing or empty '{key}'", record=f"line {number}")
        records.append(QARecord(id=str(row.get("id", number)), context=row["context"], question=row["question"]))
    if not records:
        raise DataError(path, "no questions in the file")
    return records


def answer(ready: ReadyModel, config: RunConfig, records: list[QARecord], decoding: str | None = None) -> list[dict]:
    settings = predict_settings(config, version_2=False, decoding=decoding)
    settings.with_loss = False
    result = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings)
    return [
        {"id": r.id, "question": r.question, "answer": p.text, "confidence": round(p.confidence, 4)}
        for r, p in zip(records, result.predictions)
    ]


def print_answers(rows: list[dict], output: str | None) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if output:
        try:
            write_text_exclusive(output, text)  # never over a file, folder or link already there
        except FileExistsError:
            raise RunDirError(f"{output} exists (or is a link); --output must name a new file") from None
        except OSError as exc:
            raise RunDirError(f"cannot write {output}: {exc.strerror}") from None
        print(f"wrote {len(rows)} answers to {output}", file=sys.stderr)
    elif len(rows) == 1:
        print(f"{rows[0]['answer']}\t(confidence {rows[0]['confidence']:.3f})")
    else:
        sys.stdout.write(text)
