"""Evaluate a model on records: SQuAD EM/F1, ROUGE, the formulation's own metrics, and per-question rows.

Writes, in a directory: `metrics.json`, `predictions.json` (the official `{id: answer}` format the
official SQuAD evaluate script reads) and `predictions.jsonl` (one row per question with gold
answers, scores, confidence and a failure category).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from loraqa import distributed
from loraqa.atomic import write_json_atomic, write_text_atomic
from loraqa.config.decoding import parse_decoding
from loraqa.config.schema import RunConfig
from loraqa.console import bars_enabled
from loraqa.data.records import QARecord
from loraqa.device import autocast_for
from loraqa.formulations import Prediction, PredictSettings
from loraqa.inference.uncertainty import score_intervals
from loraqa.lora.no_answer import stored_threshold
from loraqa.metrics import exact_match, f1, failure_category, rouge_scores, squad_scores
from loraqa.metrics.slices import answer_position, answer_type, context_quartiles, question_word, slice_metrics
from loraqa.runs.files import METRICS_FILE, PREDICTIONS_FILE, QUESTION_ROWS_FILE

# The formulations' own metrics (teacher-forced, independent of which answer is chosen).
MODEL_METRICS = ("eval_loss", "token_accuracy", "start_accuracy", "end_accuracy")


@dataclass
class EvalOutcome:
    metrics: dict[str, float]
    rows: list[dict]
    predictions: list[Prediction] = field(default_factory=list)  # as answered, to decide again (at_threshold)


def predict_settings(
    config: RunConfig, version_2: bool, decoding: str | None = None, adapter: str | Path | None = None
) -> PredictSettings:
    """How to answer with `config`; a SQuAD v2 threshold of `auto` is the one `adapter` carries (0.0 without)."""
    generation = config.generation
    return PredictSettings(
        batch_size=config.evaluation.batch_size,
        generate_kwargs=parse_decoding(decoding or generation.decoding),
        max_new_tokens=generation.max_new_tokens,
        stop_at_newline=generation.stop_at_newline,
        n_best_size=config.evaluation.n_best_size,
        null_score_diff_threshold=answering_threshold(config, adapter),
        version_2=version_2,
        with_loss=config.evaluation.with_loss,
        window_tokens=config.model.max_seq_length,
    )


def answering_threshold(config: RunConfig, adapter: str | Path | None) -> float:
    """The no-answer threshold to answer with: the user's number, else the adapter's validation choice, else 0."""
    chosen = config.evaluation.null_score_diff_threshold
    if chosen != "auto":
        return float(chosen)
    stored = stored_threshold(adapter)
    return 0.0 if stored is None else stored


def evaluate_records(
    formulation, model, tokenizer, records: Sequence[QARecord], settings: PredictSettings, label: str = "eval"
) -> EvalOutcome:
    """Answer every record and score the answers; nothing is written.

    Under torchrun each rank answers its contiguous share of the records (a paragraph's questions
    stay together, for the shared-prefix speedup) and every rank gets all answers back, in record
    order, so each question is answered once and the metrics are a single process's. The
    teacher-forced metrics (eval_loss, accuracies) are averaged over ranks weighted by questions.
    """
    if settings.with_loss and not getattr(model, "teacher_forcing", True):
        # An ONNX export's generative graph returns the last position's logits only: answers, no gold-answer loss.
        settings = dataclasses.replace(settings, with_loss=False)
    started = time.perf_counter()
    share = distributed.shard(records)
    with tqdm(
        total=len(share),
        desc=label,
        unit="q",
        leave=False,
        dynamic_ncols=True,
        disable=not distributed.is_main() or not bars_enabled(),
    ) as bar:
        with autocast_for(model):  # a half frozen base beside fp32 LoRA weights (training's model on a GPU)
            result = formulation.predict(model, tokenizer, share, settings, progress=bar.update)
    if distributed.is_distributed():
        result = _gathered(result, len(share))
    seconds = time.perf_counter() - started
    return score_predictions(records, result.predictions, result.metrics, tokenizer, settings, seconds)


def score_predictions(
    records: Sequence[QARecord],
    answers: Sequence[Prediction],
    model_metrics: dict,
    tokenizer,
    settings: PredictSettings,
    seconds: float,
) -> EvalOutcome:
    """Score answers given in record order (`model_metrics`: the formulation's own, e.g. eval_loss)."""
    predictions = {p.id: p.text for p in answers}
    gold = {r.id: r.answer_texts for r in records}
    metrics: dict[str, Any] = dict(squad_scores(predictions, gold))  # scores, then slices and failures
    metrics.update(rouge_scores([predictions[r.id] for r in records], [r.answer_texts for r in records]))
    metrics.update(model_metrics)
    rows = []
    slices = record_slices(records, tokenizer, settings.window_tokens, settings.version_2)
    for record, prediction, in_slices in zip(records, answers, slices, strict=True):
        row = {
            "id": record.id,
            "question": record.question,
            "gold_answers": record.answer_texts,
            "prediction": prediction.text,
            "exact_match": exact_match(prediction.text, record.answer_texts),
            "f1": f1(prediction.text, record.answer_texts),
            "confidence": prediction.confidence,
            "failure": failure_category(prediction.text, record.answer_texts, record.question),
            "slices": in_slices,
        }
        if prediction.null_score_diff is not None:  # SQuAD v2: what a threshold is chosen from (metrics/abstention.py)
            row["null_score_diff"] = prediction.null_score_diff
            row["best_answer"] = prediction.best_answer
        rows.append(row)
    metrics.update(score_intervals(rows))  # exact_match_ci, f1_ci: how far these questions pin the scores down
    metrics["slices"] = slice_metrics(rows)  # where it fails: EM/F1 per question word, answer type, ...
    failures = Counter(row["failure"] for row in rows if row["failure"])
    metrics["failures"] = dict(failures)
    metrics["seconds"] = round(seconds, 2)
    metrics["questions_per_second"] = round(len(records) / seconds, 3) if seconds > 0 else 0.0
    return EvalOutcome(metrics, rows, list(answers))


def at_threshold(
    outcome: EvalOutcome, records: Sequence[QARecord], tokenizer, settings: PredictSettings, threshold: float
) -> EvalOutcome:
    """The same answers decided at another no-answer threshold, scored again (no model runs)."""
    model_metrics = {key: outcome.metrics[key] for key in MODEL_METRICS if key in outcome.metrics}
    answers = [p.at_threshold(threshold) for p in outcome.predictions]
    rescored = score_predictions(records, answers, model_metrics, tokenizer, settings, outcome.metrics["seconds"])
    rescored.metrics["null_score_diff_threshold"] = threshold
    return rescored


def record_slices(records: Sequence[QARecord], tokenizer, window_tokens: int | None, version_2: bool) -> list[dict]:
    """Each record's slice in every dimension of metrics/slices.py."""
    quartiles = context_quartiles([len(r.context) for r in records])
    windows: dict[tuple[str, str], int | None] = {}
    out = []
    for record, quartile in zip(records, quartiles, strict=True):
        answer_end = None
        if record.answers and record.answers[0].answer_start >= 0:
            answer_end = record.answers[0].answer_start + len(record.answers[0].text)
        key = (record.question, record.context)
        if key not in windows:
            windows[key] = first_window_chars(tokenizer, record.question, record.context, window_tokens)
        in_slices = {
            "question_word": question_word(record.question),
            "answer_type": answer_type(record.answer_texts),
            "context_length": quartile,
            "answer_position": answer_position(answer_end, windows[key]),
        }
        if version_2:
            in_slices["answerable"] = "no" if record.is_impossible else "yes"
        out.append(in_slices)
    return out


def first_window_chars(tokenizer, question: str, context: str, window_tokens: int | None) -> int | None:
    """How many context characters the first window holds: the window less the question and three
    special tokens ([CLS] q [SEP] c [SEP]); an approximation for generative prompts, whose template
    takes a few more. None without a fast tokenizer (no offsets) or a window size."""
    if window_tokens is None or not getattr(tokenizer, "is_fast", False):
        return None
    room = window_tokens - len(tokenizer(question, add_special_tokens=False)["input_ids"]) - 3
    offsets = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if room <= 0:
        return 0
    return len(context) if room >= len(offsets) else offsets[room - 1][1]


def _gathered(result, count: int):
    """Every rank's predictions in rank (= record) order, and its metrics weighted by its count."""
    parts = distributed.gather_objects((result.predictions, result.metrics, count))
    keys = {key for _, metrics, _ in parts for key in metrics}
    metrics = {
        key: sum(m[key] * n for _, m, n in parts if key in m) / (sum(n for _, m, n in parts if key in m) or 1)
        for key in sorted(keys)
    }
    return type(result)([p for predictions, _, _ in parts for p in predictions], metrics)


def write_outcome(outcome: EvalOutcome, directory: str | Path, extra: dict | None = None) -> None:
    """Write the predictions files, then `metrics.json` LAST: its presence marks a complete
    evaluation (a resumed run re-evaluates a baseline that lacks it)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / PREDICTIONS_FILE, {row["id"]: row["prediction"] for row in outcome.rows})
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in outcome.rows)
    write_text_atomic(directory / QUESTION_ROWS_FILE, lines)
    write_json_atomic(directory / METRICS_FILE, {**(extra or {}), **outcome.metrics})


TOKEN_ACCURACY_NOTE = (
    "tok-acc: token accuracy, 0-100, teacher-forced (the gold prefix is given): "
    "a training-health signal, not answer quality"
)


INTERVAL_NOTE = (
    "F1 95% CI: where the F1 of questions like these would fall (bootstrap over the questions); see docs/evaluation.md"
)


NO_ANSWER_NOTE = (
    "HasAns/NoAns F1: on the answerable and the unanswerable questions (SQuAD v2); "
    "the no-answer threshold is chosen on validation (docs/evaluation.md)"
)


def format_table(rows: list[tuple[str, dict]]) -> str:
    """A plain table of EM / F1 (with its 95% interval) / ROUGE-L / count / time for each labelled
    metrics dict, as wide as its longest label; a `tok-acc` column (with a note on what it means)
    when a row has one, and HasAns / NoAns F1 columns when a row has them (SQuAD v2)."""
    width = max([28, *(len(label) for label, _ in rows)])
    with_accuracy = any("token_accuracy" in m for _, m in rows)
    with_interval = any("f1_ci" in m for _, m in rows)
    with_no_answer = any("HasAns_f1" in m for _, m in rows)
    header = f"{'model':<{width}} {'EM':>7} {'F1':>7}" + (f" {'F1 95% CI':>15}" if with_interval else "")
    header += f" {'HasAns F1':>9} {'NoAns F1':>8}" if with_no_answer else ""
    header += f" {'ROUGE-L':>8}" + (f" {'tok-acc':>8}" if with_accuracy else "") + f" {'n':>6} {'time':>9}"
    lines = [header, "-" * len(header)]
    for label, m in rows:
        ci = ""
        if with_interval:
            bounds = m.get("f1_ci")
            text = f"[{bounds['low']:.1f}, {bounds['high']:.1f}]" if bounds else "-"
            ci = f" {text:>15}"
        if with_no_answer:
            ci += f" {_number(m.get('HasAns_f1')):>9} {_number(m.get('NoAns_f1')):>8}"
        accuracy = ""
        if with_accuracy:
            accuracy = f" {m['token_accuracy']:>8.2f}" if "token_accuracy" in m else f" {'-':>8}"
        lines.append(
            f"{label:<{width}} {m['exact_match']:>7.2f} {m['f1']:>7.2f}{ci} {m.get('rougeL', 0.0):>8.2f}{accuracy} "
            f"{m['count']:>6} {m['seconds']:>8.1f}s"
        )
    if with_accuracy:
        lines.append(TOKEN_ACCURACY_NOTE)
    if with_interval:
        lines.append(INTERVAL_NOTE)
    if with_no_answer:
        lines.append(NO_ANSWER_NOTE)
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def side_by_side_rows(records: Sequence[QARecord], outcomes: dict[str, EvalOutcome]) -> list[dict]:
    """One row per question: id, question, gold answers, then each decoding's answer under its name."""
    rows = []
    for index, record in enumerate(records):
        row = {"id": record.id, "question": record.question, "gold_answers": record.answer_texts}
        for decoding, outcome in outcomes.items():
            row[decoding] = outcome.rows[index]["prediction"]
        rows.append(row)
    return rows
