"""Seq2seq QA (T5, FLAN-T5): `question: ... context: ...` in, the answer text out.

Label padding is -100 so padding never counts in the loss, and -100 never reaches a decoder
(the OverflowError pitfall). T5 is never trained in fp16 (NaN losses); see loraqa.device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

from loraqa.data.records import QARecord
from loraqa.formulations.base import PredictSettings
from loraqa.formulations.generative import GenerativeFormulation
from loraqa.formulations.teacher_forcing import labelled_logprobs


class Seq2SeqFormulation(GenerativeFormulation):
    name = "seq2seq"
    decoder_only = False
    peft_task_type = "SEQ_2_SEQ_LM"

    def auto_model_class(self) -> type:
        return AutoModelForSeq2SeqLM

    def prepare_tokenizer(self, tokenizer) -> None:
        super().prepare_tokenizer(tokenizer)
        tokenizer.padding_side = "right"

    def prompt_text(self, record: QARecord) -> str:
        return self._prompt(record.question, record.context)

    def _prompt(self, question: str, context: str) -> str:
        if self.config.closed_book:
            return f"question: {question}"
        return f"question: {question} context: {context}"

    def usage_notes(self) -> list[str]:
        return [
            f"Prompt: `{self._prompt('{question}', '{context}')}`; answer with",
            '`model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=24, do_sample=False)`.',
        ]

    def prompt_ids(self, record: QARecord, tokenizer) -> list[int]:
        # The question comes first, so truncation only ever cuts the end of the context.
        return tokenizer(self.prompt_text(record), truncation=True, max_length=self.config.max_seq_length)["input_ids"]

    def training_features(self, records: Sequence[QARecord], tokenizer) -> list[dict[str, list[int]]]:
        features = []
        for record in records:
            features.append(
                {"input_ids": self.prompt_ids(record, tokenizer), "labels": self._target_ids(record, tokenizer)}
            )
        return features

    def _target_ids(self, record: QARecord, tokenizer) -> list[int]:
        """The answer's ids ending in exactly one EOS, within max_answer_length tokens.

        T5's own tokenizer appends EOS, but one that does not (a tokenizers-only BPE) would teach a
        model that never stops, so EOS is added here when it is missing, as the causal formulation does.
        """
        answer = record.answers[0].text if record.answers else self.config.no_answer_text
        limit = self.config.max_answer_length
        ids = tokenizer(text_target=answer, truncation=True, max_length=limit)["input_ids"]
        if ids and ids[-1] == tokenizer.eos_token_id:
            return ids
        return ids[: limit - 1] + [tokenizer.eos_token_id]

    def collate(
        self, features: list[dict[str, list[int]]], tokenizer, share_prefixes: bool = False
    ) -> dict[str, torch.Tensor]:
        collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")
        return dict(collator([dict(f) for f in features]))

    def generation_prompt(self, record: QARecord, tokenizer, settings: PredictSettings) -> list[int]:
        return self.prompt_ids(record, tokenizer)

    def score_batch(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
        out = model(**batch)
        labels = batch["labels"]
        mask = labels != -100
        return out.loss, int(mask.sum()), int(((out.logits.argmax(-1) == labels) & mask).sum())

    def target_logprobs(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(**batch).logits.float()
        return labelled_logprobs(logits, batch["labels"])
