"""What seq2seq and causal formulations share: answers are generated, gold answers are scored by
teacher forcing. Subclasses say how a prompt is built and how one batch is scored.

SQuAD v2: an unanswerable question is trained to answer `model.no_answer_text`, which counts as the
empty answer. Each answer then weighs that text against the model's best other answer by their
sequence log probabilities: `null_score_diff` = log P(no-answer text) - log P(best answer), so
sigmoid(null_score_diff) is the model's probability of "no answer" between the two, and the
threshold chosen on validation (metrics/abstention.py) decides, as for extractive models. When
greedy decoding wrote the no-answer text itself, the best other answer is decoded again with that
text banned.
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Sequence

import torch

from loraqa.data.records import QARecord
from loraqa.formulations.base import Formulation, Prediction, PredictResult, PredictSettings, Progress
from loraqa.formulations.generation import generate_answers
from loraqa.formulations.teacher_forcing import sequence_logprobs, teacher_forced_metrics
from loraqa.metrics.squad import normalize_answer


class GenerativeFormulation(Formulation):
    decoder_only: bool  # the prompt is part of the generated sequence (causal) or the encoder input
    generates = True

    @abstractmethod
    def generation_prompt(self, record: QARecord, tokenizer, settings: PredictSettings) -> list[int]:
        """Token ids the model generates an answer from."""

    @abstractmethod
    def target_logprobs(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each row's summed log probability of its target tokens (the labels), for a collated batch."""

    @abstractmethod
    def score_batch(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
        """(mean loss over answer tokens, answer tokens, answer tokens predicted right) for a collated batch."""

    def mixes_adapters(self, version_2: bool) -> bool:
        # Generation passes each row's adapter on; SQuAD v2's teacher-forced no-answer scores do not (yet).
        return not version_2

    def predict(
        self,
        model,
        tokenizer,
        records: Sequence[QARecord],
        settings: PredictSettings,
        progress: Progress | None = None,
    ) -> PredictResult:
        if settings.adapter_names is not None and (settings.version_2 or settings.with_loss):
            raise ValueError("adapter_names: generative answers mix adapters without SQuAD v2 and with_loss only")
        prompts = [self.generation_prompt(r, tokenizer, settings) for r in records]
        answers = generate_answers(
            model,
            tokenizer,
            prompts,
            settings,
            decoder_only=self.decoder_only,
            progress=progress,
            adapter_names=settings.adapter_names,
        )
        if settings.version_2:
            predictions = self._abstaining(model, tokenizer, records, prompts, answers, settings)
        else:
            predictions = [Prediction(r.id, text, conf) for r, (text, conf, _) in zip(records, answers, strict=True)]
        metrics: dict[str, float] = {}
        if settings.with_loss:
            features = self.training_features(records, tokenizer)
            collate = lambda batch: self.collate(batch, tokenizer)  # noqa: E731
            metrics = teacher_forced_metrics(model, features, collate, settings.batch_size, self.score_batch)
        return PredictResult(predictions, metrics)

    def is_no_answer(self, text: str) -> bool:
        """Whether a generated answer says "no answer" (the configured text, as SQuAD normalises it)."""
        return normalize_answer(text) == normalize_answer(self.config.no_answer_text)

    def _abstaining(self, model, tokenizer, records, prompts, answers, settings: PredictSettings) -> list[Prediction]:
        """SQuAD v2 predictions: each best non-null answer weighed against the no-answer text."""
        unanswerable = [dataclasses.replace(r, answers=()) for r in records]
        features = self.training_features(unanswerable, tokenizer)
        collate = lambda batch: self.collate(batch, tokenizer)  # noqa: E731
        null_logprobs = sequence_logprobs(model, features, collate, settings.batch_size, self.target_logprobs)
        null_lengths = [len(self._target_ids(r, tokenizer)) for r in unanswerable]
        best = list(answers)
        again = [i for i, (text, _, _) in enumerate(answers) if self.is_no_answer(text)]
        if again and self.config.no_answer_text.strip():
            banned = self._target_ids(unanswerable[0], tokenizer)[:-1]  # the text without its end token
            kwargs = {**settings.generate_kwargs, "bad_words_ids": [banned]}
            retry = dataclasses.replace(settings, generate_kwargs=kwargs)
            redone = generate_answers(
                model, tokenizer, [prompts[i] for i in again], retry, decoder_only=self.decoder_only
            )
            for i, answer in zip(again, redone, strict=True):
                best[i] = answer
        predictions = []
        for record, (text, confidence, logprob), null_logprob, length in zip(
            records, best, null_logprobs, null_lengths, strict=True
        ):
            null_confidence = math.exp(null_logprob / max(length, 1))
            if self.is_no_answer(text) or not text:  # nothing else to answer: "no answer" is all there is
                prediction = Prediction(record.id, "", null_confidence, 0.0, "", 0.0, null_confidence)
            else:
                diff = null_logprob - logprob
                prediction = Prediction(record.id, text, confidence, diff, text, confidence, null_confidence)
            predictions.append(prediction.at_threshold(settings.null_score_diff_threshold))
        return predictions
