"""What seq2seq and causal formulations share: answers are generated, gold answers are scored by
teacher forcing. Subclasses say how a prompt is built and how one batch is scored."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch

from loraqa.data.records import QARecord
from loraqa.formulations.base import Formulation, PredictResult, PredictSettings, Prediction, Progress
from loraqa.formulations.generation import generate_answers
from loraqa.formulations.teacher_forcing import teacher_forced_metrics


class GenerativeFormulation(Formulation):
    decoder_only: bool  # the prompt is part of the generated sequence (causal) or the encoder input
    generates = True

    @abstractmethod
    def generation_prompt(self, record: QARecord, tokenizer, settings: PredictSettings) -> list[int]:
        """Token ids the model generates an answer from."""

    @abstractmethod
    def score_batch(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
        """(mean loss over answer tokens, answer tokens, answer tokens predicted right) for a collated batch."""

    def predict(
        self,
        model,
        tokenizer,
        records: Sequence[QARecord],
        settings: PredictSettings,
        progress: Progress | None = None,
    ) -> PredictResult:
        prompts = [self.generation_prompt(r, tokenizer, settings) for r in records]
        answers = generate_answers(
            model, tokenizer, prompts, settings, decoder_only=self.decoder_only, progress=progress
        )
        predictions = [Prediction(r.id, text, conf) for r, (text, conf) in zip(records, answers)]
        metrics: dict[str, float] = {}
        if settings.with_loss:
            features = self.training_features(records, tokenizer)
            collate = lambda batch: self.collate(batch, tokenizer)  # noqa: E731
            metrics = teacher_forced_metrics(model, features, collate, settings.batch_size, self.score_batch)
        return PredictResult(predictions, metrics)
