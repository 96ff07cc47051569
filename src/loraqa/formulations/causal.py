"""Causal (decoder-only) QA: prompt + answer + EOS, loss on the answer tokens only.

Training batches are LEFT-padded, so every example's answer ends in the last column. That lets the
loss ask the model for logits of the last `max answer length + 1` positions only
(`logits_to_keep`): the LM head over a 49k vocabulary is about a fifth of SmolLM2's forward FLOPs,
and the prompt positions never needed it. Position ids are derived from the attention mask so left
padding does not shift positions.

With `collate(..., share_prefixes=True)` (training's choice; `training.share_prompt_prefixes`), the
questions of one paragraph come in one batch (`prompt_groups` tells the sampler which) and collate splits the batch
in two passes: the distinct shared starts (template + context) once, then each row's question and
answer on that KV cache. SQuAD asks ~5 questions a paragraph, so most prompt tokens run once instead
of five times, with the same loss and gradient (`tests/formulations/test_shared_prefix_training.py`).

The target ends with EOS as a real label (never masked as padding), so the model learns to stop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from loraqa.data.records import QARecord
from loraqa.errors import ConfigError
from loraqa.formulations.base import PredictSettings
from loraqa.formulations.config_rules import render_prompt
from loraqa.formulations.generative import GenerativeFormulation
from loraqa.formulations.shared_prefix import group_by_shared_start, positions, prefix_cache, split_rows, training_split
from loraqa.formulations.teacher_forcing import labelled_logprobs

INSTRUCTION = "Answer the question with a short span copied from the context."
CLOSED_BOOK_INSTRUCTION = "Answer the question with a short phrase."
# The prompt new adapters train with (and record in loraqa.json): {question} and {context} are filled in.
PROMPT_TEMPLATE = INSTRUCTION + "\nContext: {context}\nQuestion: {question}"
CLOSED_BOOK_PROMPT_TEMPLATE = CLOSED_BOOK_INSTRUCTION + "\nQuestion: {question}"
# The prompts of adapters saved before loraqa recorded one: frozen, whatever the defaults above become.
UNRECORDED_PROMPT_TEMPLATE = (
    "Answer the question with a short span copied from the context.\nContext: {context}\nQuestion: {question}"
)
UNRECORDED_CLOSED_BOOK_PROMPT_TEMPLATE = "Answer the question with a short phrase.\nQuestion: {question}"
ANSWER_CUE = "\nAnswer:"  # ends the prompt without a chat template


class CausalFormulation(GenerativeFormulation):
    name = "causal"
    decoder_only = True
    peft_task_type = "CAUSAL_LM"

    def __init__(self, model_config):
        super().__init__(model_config)
        default = CLOSED_BOOK_PROMPT_TEMPLATE if model_config.closed_book else PROMPT_TEMPLATE
        self.prompt_template = model_config.prompt_template or default
        # Prompt and answer share the model.max_seq_length window: a target as long as the window
        # leaves no token of the prompt (and a negative room reads from the wrong end).
        if model_config.max_answer_length + 1 >= model_config.max_seq_length:
            raise ConfigError(
                "model.max_answer_length",
                f"{model_config.max_answer_length} (+ 1 end token) leaves no "
                f"room for the prompt in model.max_seq_length={model_config.max_seq_length}; a causal "
                "model reads the prompt and writes the answer in one window",
            )

    def auto_model_class(self) -> type:
        return AutoModelForCausalLM

    @classmethod
    def unrecorded_prompt_template(cls, model_config) -> str | None:
        return UNRECORDED_CLOSED_BOOK_PROMPT_TEMPLATE if model_config.closed_book else UNRECORDED_PROMPT_TEMPLATE

    def check_generation(self, max_new_tokens: int) -> None:
        if max_new_tokens >= self.config.max_seq_length:
            raise ConfigError(
                "generation.max_new_tokens",
                f"{max_new_tokens} leaves no room for the prompt in "
                f"model.max_seq_length={self.config.max_seq_length}: a causal model reads the prompt "
                f"and writes the answer in one window; use less than {self.config.max_seq_length}",
            )

    def prepare_tokenizer(self, tokenizer) -> None:
        super().prepare_tokenizer(tokenizer)
        tokenizer.padding_side = "left"

    # --- prompts ---------------------------------------------------------------------------

    def _uses_chat(self, tokenizer) -> bool:
        if self.config.use_chat_template == "auto":
            return tokenizer.chat_template is not None
        return bool(self.config.use_chat_template)

    def _body(self, question: str, context: str) -> str:
        """The prompt's text: the one user message with a chat template, else followed by ANSWER_CUE."""
        return render_prompt(self.prompt_template, question, "" if self.config.closed_book else context)

    def _prompt_text(self, record: QARecord, context: str, tokenizer) -> str:
        body = self._body(record.question, context)
        if self._uses_chat(tokenizer):
            messages = [{"role": "user", "content": body}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return body + ANSWER_CUE

    def usage_notes(self) -> list[str]:
        body = self._body("{question}", "{context}").replace("\n", "\\n")
        cue = ANSWER_CUE.replace("\n", "\\n")
        return [
            f"Prompt (body): `{body}`; with a chat template (saved with the tokenizer) as one user message through",
            '`tokenizer.apply_chat_template([...], add_generation_prompt=True, return_dict=True, return_tensors="pt")`,',
            f'else followed by `{cue}` through `tokenizer(prompt, return_tensors="pt")`. Then',
            "`model.generate(**inputs, max_new_tokens=24, do_sample=False)`; the answer is the first line of the new tokens.",
        ]

    def prompt_ids(self, record: QARecord, tokenizer, reserve: int) -> list[int]:
        """Token ids of the prompt, leaving `reserve` tokens of max_seq_length for the answer.

        A context that does not fit is cut at a token boundary, so the question (at the end) survives.
        """
        budget = self.config.max_seq_length - reserve
        special = not self._uses_chat(tokenizer)  # a chat template writes its own special tokens
        ids = tokenizer(self._prompt_text(record, record.context, tokenizer), add_special_tokens=special)["input_ids"]
        if len(ids) > budget and not self.config.closed_book:
            overhead = len(ids) - len(tokenizer(record.context, add_special_tokens=False)["input_ids"])
            keep = max(budget - overhead - 2, 0)  # 2: tokens can merge differently at the cut
            offsets = tokenizer(record.context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            cut = offsets[keep - 1][1] if keep > 0 else 0
            text = self._prompt_text(record, record.context[:cut], tokenizer)
            ids = tokenizer(text, add_special_tokens=special)["input_ids"]
        return ids[-budget:] if len(ids) > budget else ids

    def _target_ids(self, record: QARecord, tokenizer) -> list[int]:
        answer = record.answers[0].text if record.answers else self.config.no_answer_text
        text = answer if self._uses_chat(tokenizer) or not answer else " " + answer
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: self.config.max_answer_length]
        return ids + [tokenizer.eos_token_id]

    # --- training ----------------------------------------------------------------------------

    def training_features(self, records: Sequence[QARecord], tokenizer) -> list[dict[str, list[int]]]:
        features = []
        for record in records:
            target = self._target_ids(record, tokenizer)
            prompt = self.prompt_ids(record, tokenizer, reserve=len(target))
            features.append({"input_ids": prompt + target, "n_target": [len(target)]})
        return features

    def collate(
        self, features: list[dict[str, list[int]]], tokenizer, share_prefixes: bool = False
    ) -> dict[str, torch.Tensor]:
        if share_prefixes:
            split = training_split([_prompt_of(f) for f in features])
            if split is not None:
                return self._collate_split(features, split, tokenizer.pad_token_id)
        width = max(len(f["input_ids"]) for f in features)
        pad = tokenizer.pad_token_id
        input_ids = torch.full((len(features), width), pad, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            ids = torch.tensor(feature["input_ids"], dtype=torch.long)
            input_ids[row, width - len(ids) :] = ids
            attention[row, width - len(ids) :] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "position_ids": positions(attention),
            **self._answer_labels(features, input_ids),
        }

    def _collate_split(self, features: list[dict[str, list[int]]], split: list[int], pad: int) -> dict:
        """A batch whose shared prompt starts run once, in a prefix pass (`shared_prefix.split_rows`)."""
        rows = split_rows([f["input_ids"] for f in features], split, pad)
        prefix_mask = torch.tensor(rows.prefix_mask, dtype=torch.long)
        input_ids = torch.tensor(rows.rest_ids, dtype=torch.long)
        attention = torch.cat([prefix_mask[rows.owner], torch.tensor(rows.rest_mask, dtype=torch.long)], dim=1)
        return {
            "prefix_input_ids": torch.tensor(rows.prefix_ids, dtype=torch.long),
            "prefix_attention_mask": prefix_mask,
            "prefix_owner": torch.tensor(rows.owner, dtype=torch.long),
            "input_ids": input_ids,
            "attention_mask": attention,  # prefix and rest: the rest attends to its prefix's cache
            "position_ids": positions(attention)[:, prefix_mask.shape[1] :],
            **self._answer_labels(features, input_ids),
        }

    @staticmethod
    def _answer_labels(features: list[dict[str, list[int]]], input_ids: torch.Tensor) -> dict:
        """Labels on the answer tokens, which end in the last column of the left-padded rows."""
        width = input_ids.shape[1]
        labels = torch.full_like(input_ids, -100)
        for row, feature in enumerate(features):
            n = feature["n_target"][0]
            labels[row, width - n :] = input_ids[row, width - n :]
        # The loss needs logits for the longest answer plus the position before it. Known here as a
        # plain int, so the loss never has to read it back from the device (a sync per step on a GPU).
        keep = min(max(f["n_target"][0] for f in features) + 1, width)
        return {"labels": labels, "logits_to_keep": keep}

    def compute_loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss, _, _ = self._answer_loss(model, batch, count_correct=False)
        return loss

    def _answer_loss(self, model, batch: dict, count_correct: bool = True) -> tuple[torch.Tensor, int, int]:
        """Mean cross-entropy over answer tokens, how many there were, and how many argmax got right
        (0 when not counted: training has no use for it, and it costs an argmax over the vocabulary)."""
        labels = batch["labels"]
        keep = batch.get("logits_to_keep") or min(int((labels != -100).sum(dim=1).max()) + 1, labels.shape[1])
        cache = None
        if "prefix_input_ids" in batch:
            cache = prefix_cache(
                model, batch["prefix_input_ids"], batch["prefix_attention_mask"], batch["prefix_owner"]
            )
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            cache=cache,
            logits_to_keep=keep,
        )
        logits = out.logits[:, :-1, :].float()
        targets = labels[:, labels.shape[1] - keep + 1 :]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        mask = targets != -100
        if not count_correct:
            return loss, 0, 0
        correct = int(((logits.argmax(-1) == targets) & mask).sum())
        return loss, int(mask.sum()), correct

    def prompt_groups(self, features: list[dict[str, list[int]]]) -> list[list[int]]:
        """Features whose prompts share a start (questions on one paragraph), as index groups."""
        return group_by_shared_start([_prompt_of(f) for f in features])[0]

    # --- prediction ----------------------------------------------------------------------------

    def generation_prompt(self, record: QARecord, tokenizer, settings: PredictSettings) -> list[int]:
        self.check_generation(settings.max_new_tokens)  # eval and predict reach here without prepare's check
        return self.prompt_ids(record, tokenizer, reserve=settings.max_new_tokens)

    def score_batch(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
        return self._answer_loss(model, batch)

    def target_logprobs(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels, keep = batch["labels"], batch["logits_to_keep"]
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=keep,
        )
        return labelled_logprobs(out.logits[:, :-1, :].float(), labels[:, labels.shape[1] - keep + 1 :])


def _prompt_of(feature: dict[str, list[int]]) -> list[int]:
    return feature["input_ids"][: len(feature["input_ids"]) - feature["n_target"][0]]
