"""Extractive QA (BERT, DistilBERT, MiniLM): predict the answer's start and end token.

A long context is cut into windows of `max_seq_length` tokens overlapping by `doc_stride`; each
window's gold span is the answer's tokens, or the [CLS] token when the answer is not inside it.
Answers are read back through the tokenizer's offset mapping, choosing the best of the n-best
starts x ends with length <= max_answer_length across all windows. For SQuAD v2, "no answer" wins
when the [CLS] score beats the best span by more than `null_score_diff_threshold`.
The QA head (`qa_outputs`) is new and is trained and saved with the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering

from loraqa.data.records import QARecord
from loraqa.errors import LoraqaError
from loraqa.formulations.base import (
    Formulation,
    Prediction,
    PredictResult,
    PredictSettings,
    Progress,
    batches_by_length,
    model_device,
    rows_by_adapter,
)


@dataclass
class Window:
    """One doc_stride window of a record: token ids, character offsets and the gold span as token positions."""

    record_index: int
    input_ids: list[int]
    token_type_ids: list[int] | None
    offsets: list[tuple[int, int] | None]  # character span in the context; None outside it
    start_position: int  # gold start token (0 = [CLS]: answer not in this window)
    end_position: int


class ExtractiveFormulation(Formulation):
    name = "extractive"
    # No peft task type: peft's PeftModelForQuestionAnswering.forward (peft 0.21) does not pass
    # token_type_ids on to the model, so with model.use_token_type_ids BERT would train without
    # segment ids and answer with them once merged. The plain PeftModel passes every input through.
    peft_task_type = None
    default_modules_to_save = ("qa_outputs",)
    label_names = ("start_positions", "end_positions")

    def auto_model_class(self) -> type:
        return AutoModelForQuestionAnswering

    def usage_notes(self) -> list[str]:
        return [
            'Call it with the tokenizer\'s output as it is: `model(**tokenizer(question, context, return_tensors="pt"))`',
            "gives start/end logits over the tokens (the adapter carries the segment embedding it was trained with).",
        ]

    def prepare_tokenizer(self, tokenizer) -> None:
        if not tokenizer.is_fast:
            raise LoraqaError("extractive QA needs a fast tokenizer (offset mapping); this model has none")
        tokenizer.padding_side = "right"

    def windows(self, records: Sequence[QARecord], tokenizer) -> list[Window]:
        """Tokenize (question, context) pairs into overlapping windows with gold positions."""
        encoded = tokenizer(
            [r.question.lstrip() for r in records],
            [r.context for r in records],
            truncation="only_second",
            max_length=self.config.max_seq_length,
            stride=self.config.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        windows = []
        for i, input_ids in enumerate(encoded["input_ids"]):
            record_index = encoded["overflow_to_sample_mapping"][i]
            sequence_ids = encoded.sequence_ids(i)
            offsets = [
                tuple(span) if sequence_ids[k] == 1 else None for k, span in enumerate(encoded["offset_mapping"][i])
            ]
            start, end = gold_positions(records[record_index], offsets)
            token_types = encoded["token_type_ids"][i] if "token_type_ids" in encoded else None
            windows.append(Window(record_index, input_ids, token_types, offsets, start, end))
        return windows

    def training_features(self, records: Sequence[QARecord], tokenizer) -> list[dict[str, list[int]]]:
        return [_feature(w) for w in self.windows(records, tokenizer)]

    def makes_segment_ids_inert(self) -> bool:
        return not self.config.use_token_type_ids  # model.use_token_type_ids: BERT's segments are used

    def collate(
        self, features: list[dict[str, list[int]]], tokenizer, share_prefixes: bool = False
    ) -> dict[str, torch.Tensor]:
        inputs = [{k: v for k, v in f.items() if k not in ("start_positions", "end_positions")} for f in features]
        batch = dict(tokenizer.pad(inputs, padding=True, return_tensors="pt"))
        if "start_positions" in features[0]:
            batch["start_positions"] = torch.tensor([f["start_positions"][0] for f in features])
            batch["end_positions"] = torch.tensor([f["end_positions"][0] for f in features])
        return batch

    def mixes_adapters(self, version_2: bool) -> bool:
        return True  # one forward per batch of windows; a window's adapter is its record's

    @torch.no_grad()
    def predict(
        self,
        model,
        tokenizer,
        records: Sequence[QARecord],
        settings: PredictSettings,
        progress: Progress | None = None,
    ) -> PredictResult:
        windows = self.windows(records, tokenizer)
        features = [_feature(w) for w in windows]
        device = model_device(model)
        was_training = model.training
        model.eval()
        start_logits: list[np.ndarray] = [np.empty(0)] * len(windows)
        end_logits: list[np.ndarray] = [np.empty(0)] * len(windows)
        loss_sum, start_hits, end_hits = 0.0, 0, 0
        windows_per_record = np.bincount([w.record_index for w in windows], minlength=len(records))
        done, reported = 0.0, 0
        window_adapters = (
            None if settings.adapter_names is None else [settings.adapter_names[w.record_index] for w in windows]
        )
        for batch_index in batches_by_length([len(f["input_ids"]) for f in features], settings.batch_size):
            batch_index = rows_by_adapter(batch_index, window_adapters)
            batch = self.collate([features[i] for i in batch_index], tokenizer)
            gold_start, gold_end = batch.pop("start_positions"), batch.pop("end_positions")
            out = model(**{k: v.to(device) for k, v in batch.items()}, **_row_adapters(window_adapters, batch_index))
            starts, ends = out.start_logits.float().cpu(), out.end_logits.float().cpu()
            if settings.with_loss:
                loss = (F.cross_entropy(starts, gold_start) + F.cross_entropy(ends, gold_end)) / 2
                loss_sum += float(loss) * len(batch_index)
                start_hits += int((starts.argmax(-1) == gold_start).sum())
                end_hits += int((ends.argmax(-1) == gold_end).sum())
            for row, index in enumerate(batch_index):
                length = len(features[index]["input_ids"])
                start_logits[index] = starts[row, :length].numpy()
                end_logits[index] = ends[row, :length].numpy()
            if progress:
                # Progress is counted in records; a record's windows may sit in different batches.
                done += sum(1.0 / windows_per_record[windows[i].record_index] for i in batch_index)
                progress(round(done) - reported)
                reported = round(done)
        model.train(was_training)

        by_record: dict[int, list[int]] = {}
        for i, window in enumerate(windows):
            by_record.setdefault(window.record_index, []).append(i)
        predictions = []
        for record_index, record in enumerate(records):
            candidates = [(windows[i], start_logits[i], end_logits[i]) for i in by_record.get(record_index, [])]
            predictions.append(span_prediction(record, candidates, settings, self.config.max_answer_length))
        metrics: dict[str, float] = {}
        if settings.with_loss and windows:
            metrics = {
                "eval_loss": loss_sum / len(windows),
                "start_accuracy": 100.0 * start_hits / len(windows),
                "end_accuracy": 100.0 * end_hits / len(windows),
            }
        return PredictResult(predictions, metrics)


def _row_adapters(window_adapters: list[str] | None, rows: list[int]) -> dict:
    """peft's `adapter_names` for a batch of windows: each window answers as its record's adapter."""
    return {} if window_adapters is None else {"adapter_names": [window_adapters[i] for i in rows]}


def _feature(window: Window) -> dict[str, list[int]]:
    feature = {
        "input_ids": window.input_ids,
        "attention_mask": [1] * len(window.input_ids),
        "start_positions": [window.start_position],
        "end_positions": [window.end_position],
    }
    if window.token_type_ids is not None:
        feature["token_type_ids"] = window.token_type_ids
    return feature


def gold_positions(record: QARecord, offsets: list[tuple[int, int] | None]) -> tuple[int, int]:
    """Token span of the first gold answer inside this window, or (0, 0) when it is not inside."""
    if not record.answers or record.answers[0].answer_start < 0:
        return 0, 0
    answer = record.answers[0]
    char_start, char_end = answer.answer_start, answer.answer_start + len(answer.text)
    context_tokens = [k for k, span in enumerate(offsets) if span is not None]
    if not context_tokens:
        return 0, 0
    first, last = context_tokens[0], context_tokens[-1]
    if offsets[first][0] > char_start or offsets[last][1] < char_end:
        return 0, 0
    start = first
    while start <= last and offsets[start][1] <= char_start:
        start += 1
    end = last
    while end >= start and offsets[end][0] >= char_end:
        end -= 1
    return start, end


def best_answer(record, candidates, settings: PredictSettings, max_answer_length: int) -> tuple[str, float]:
    """Best span over all windows of one record; (text, probability start x end within its window)."""
    prediction = span_prediction(record, candidates, settings, max_answer_length)
    return prediction.text, prediction.confidence


def span_prediction(record, candidates, settings: PredictSettings, max_answer_length: int) -> Prediction:
    """The record's answer: its best span over all windows or, for SQuAD v2, "" when the [CLS] score
    (lowest over windows) beats that span's by more than the threshold. The difference and the span
    are kept, so a threshold can be chosen later without running the model again."""
    best_score, best = -np.inf, ("", 0.0)
    null_score, null_confidence = np.inf, 0.0
    for window, starts, ends in candidates:
        start_probs, end_probs = _softmax(starts), _softmax(ends)
        window_null = starts[0] + ends[0]
        if window_null < null_score:
            null_score, null_confidence = window_null, float(start_probs[0] * end_probs[0])
        top_starts = np.argsort(starts)[::-1][: settings.n_best_size]
        top_ends = np.argsort(ends)[::-1][: settings.n_best_size]
        for s in top_starts:
            if window.offsets[s] is None:
                continue
            for e in top_ends:
                if e < s or e - s + 1 > max_answer_length or window.offsets[e] is None:
                    continue
                score = starts[s] + ends[e]
                if score > best_score:
                    char_start, char_end = window.offsets[s][0], window.offsets[e][1]
                    best_score = score
                    best = (record.context[char_start:char_end], float(start_probs[s] * end_probs[e]))
    if not settings.version_2:
        return Prediction(record.id, *best)
    if best_score == -np.inf:  # no span at all: only "no answer" is left
        return Prediction(record.id, "", null_confidence, 0.0, "", 0.0, null_confidence)
    diff = float(null_score - best_score)
    prediction = Prediction(record.id, best[0], best[1], diff, best[0], best[1], null_confidence)
    return prediction.at_threshold(settings.null_score_diff_threshold)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max())
    return shifted / shifted.sum()
