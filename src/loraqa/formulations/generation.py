"""Batched generation with a confidence, shared by the seq2seq and causal formulations.

Questions are batched by prompt length (little padding), decoded with the KV cache, and stopped at
EOS or, for causal models, at the first newline: an answer is one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from loraqa.formulations.base import PredictSettings, Progress, batches_by_length, model_device


@lru_cache(maxsize=8)
def _newline_ids(tokenizer) -> tuple[int, ...]:
    ids = []
    for token_id in range(len(tokenizer)):
        if "\n" in tokenizer.decode([token_id]):
            ids.append(token_id)
    return tuple(ids)


def stop_token_ids(tokenizer, stop_at_newline: bool) -> list[int]:
    """EOS plus, when asked, every token whose text holds a newline."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if stop_at_newline:
        ids.extend(i for i in _newline_ids(tokenizer) if i not in ids)
    return ids


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    settings: PredictSettings,
    *,
    decoder_only: bool,
    progress: Progress | None = None,
) -> list[tuple[str, float]]:
    """Generate one answer per prompt (token ids); return (text, confidence) in prompt order.

    Confidence is the geometric mean of the chosen tokens' probabilities: exp(mean log p).
    """
    device = model_device(model)
    eos_ids = stop_token_ids(tokenizer, settings.stop_at_newline and decoder_only)
    results: list[tuple[str, float]] = [("", 0.0)] * len(prompts)
    was_training = model.training
    model.eval()
    for batch in batches_by_length([len(p) for p in prompts], settings.batch_size):
        encoded = tokenizer.pad(
            {"input_ids": [prompts[i] for i in batch]}, padding=True, return_tensors="pt"
        ).to(device)
        out = model.generate(
            **encoded,
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=eos_ids or None,
            pad_token_id=tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_scores=True,
            **settings.generate_kwargs,
        )
        # Scores cover only new tokens: after the prompt (decoder-only) or after the decoder start token.
        start = encoded["input_ids"].shape[1] if decoder_only else 1
        generated = out.sequences[:, start:]
        logprobs = _token_logprobs(model, out)
        for row, index in enumerate(batch):
            results[index] = _finish(tokenizer, generated[row], logprobs[row], eos_ids)
        if progress:
            progress(len(batch))
    model.train(was_training)
    return results


def _token_logprobs(model, out) -> torch.Tensor:
    beam_indices = getattr(out, "beam_indices", None)
    return model.compute_transition_scores(out.sequences, out.scores, beam_indices, normalize_logits=True)


def _finish(tokenizer, ids: torch.Tensor, logprobs: torch.Tensor, eos_ids: list[int]) -> tuple[str, float]:
    kept, scores = [], []
    for token, logprob in zip(ids.tolist(), logprobs.tolist()):
        if token == tokenizer.pad_token_id and token not in eos_ids:
            break  # a row that finished early is padded
        if math.isfinite(logprob):
            scores.append(logprob)
        if token in eos_ids:
            break
        kept.append(token)
    text = tokenizer.decode(kept, skip_special_tokens=True)
    text = text.strip().split("\n", 1)[0].strip()
    confidence = math.exp(sum(scores) / len(scores)) if scores else 0.0
    return text, confidence
