"""Batched generation with a confidence, shared by the seq2seq and causal formulations.

Questions are batched by prompt length (little padding), decoded with the KV cache, and stopped at
EOS or, for causal models, at the first newline: an answer is one line. Causal prompts that start
alike share one pass over their common start (`shared_prefix.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from loraqa.formulations.base import (
    PredictSettings,
    Progress,
    batches_by_length,
    model_device,
    rows_by_adapter,
    takes_position_ids,
)
from loraqa.formulations.shared_prefix import PromptBatch, plan_batches, positions, prefix_cache, split_rows

# Most SQuAD answers stop within this many tokens. Then a batch goes on with only the rows that have
# not: one rambling row would otherwise keep all 32 decoding, and a decoding step costs ~3x at
# batch 32 what it costs at batch 1 (SmolLM2: 188 vs 63 ms).
FIRST_PHASE_TOKENS = 8


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
    adapter_names: Sequence[str] | None = None,
) -> list[tuple[str, float, float]]:
    """Generate one answer per prompt (token ids); return (text, confidence, log probability) in
    prompt order. With `adapter_names` (one per prompt), each prompt is answered by its peft adapter
    within the shared batches (peft's mixed-batch `adapter_names`).

    Confidence is the geometric mean of the chosen tokens' probabilities: exp(mean log p); the log
    probability is their sum, the stop token's included (what SQuAD v2 abstention compares).
    """
    device = model_device(model)
    eos_ids = stop_token_ids(tokenizer, settings.stop_at_newline and decoder_only)
    results: list[tuple[str, float, float]] = [("", 0.0, 0.0)] * len(prompts)
    was_training = model.training
    model.eval()
    reuse_cache = _reuses_cache(model, settings, decoder_only)
    for plan in _plan(prompts, settings, reuse_cache):
        order = rows_by_adapter(
            range(len(plan.rows)), None if adapter_names is None else [adapter_names[i] for i in plan.rows]
        )
        batch, shared = [plan.rows[k] for k in order], [plan.shared[k] for k in order]
        names = None if adapter_names is None else [adapter_names[i] for i in batch]
        if any(shared):
            encoded = _with_shared_prefixes(model, [prompts[i] for i in batch], shared, tokenizer, device, names)
        else:
            encoded = tokenizer.pad({"input_ids": [prompts[i] for i in batch]}, padding=True, return_tensors="pt").to(
                device
            )
        answers = _generate(model, encoded, settings, eos_ids, tokenizer, decoder_only, reuse_cache, names)
        for index, (ids, logprobs) in zip(batch, answers, strict=True):
            results[index] = _finish(tokenizer, ids, logprobs, eos_ids)
        if progress:
            progress(len(batch))
    model.train(was_training)
    return results


def _generate(
    model,
    encoded: dict,
    settings: PredictSettings,
    eos_ids: list[int],
    tokenizer,
    decoder_only: bool,
    reuse_cache: bool,
    names: list[str] | None = None,
):
    """(new token ids, their log-probabilities) per row of one batch; `names`: each row's peft adapter.

    With `reuse_cache`, a batch decodes in two phases: FIRST_PHASE_TOKENS for every row, then, from
    the same KV cache, only the rows that have not stopped. Each phase is one `generate()` call, so
    the answers are generate()'s own.
    """
    kwargs = dict(
        eos_token_id=eos_ids or None,
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_scores=True,
        **settings.generate_kwargs,
    )
    two_phases = reuse_cache and settings.max_new_tokens > FIRST_PHASE_TOKENS
    first = FIRST_PHASE_TOKENS if two_phases else settings.max_new_tokens
    out = model.generate(**encoded, max_new_tokens=first, **kwargs, **_adapters(names))
    # Scores cover only new tokens: after the prompt (decoder-only) or after the decoder start token.
    new = out.sequences[:, encoded["input_ids"].shape[1] if decoder_only else 1 :]
    logprobs = _token_logprobs(model, out)
    rows = [(new[r], logprobs[r]) for r in range(new.shape[0])]
    if not two_phases or new.shape[1] < first or not eos_ids:  # every row stopped, or none can
        return rows
    stopped = torch.isin(new, torch.tensor(eos_ids, device=new.device)).any(dim=1)
    going = (~stopped).nonzero().flatten()
    if len(going) == 0:
        return rows
    cache = out.cache  # transformers 5 name (past_key_values: a FutureWarning)
    cache.batch_select_indices(going)
    mask = torch.cat([encoded["attention_mask"], torch.ones_like(new)], dim=1)[going]
    more = model.generate(
        input_ids=out.sequences[going],
        attention_mask=mask,
        position_ids=positions(mask),
        cache=cache,
        max_new_tokens=settings.max_new_tokens - first,
        **kwargs,
        **_adapters(None if names is None else [names[r] for r in going.tolist()]),
    )
    more_new = more.sequences[:, out.sequences.shape[1] :]
    more_logprobs = _token_logprobs(model, more)
    for j, r in enumerate(going.tolist()):
        rows[r] = (torch.cat([new[r], more_new[j]]), torch.cat([logprobs[r], more_logprobs[j]]))
    return rows


def _reuses_cache(model, settings: PredictSettings, decoder_only: bool) -> bool:
    """Whether generate() may start from a KV cache built elsewhere (a shared prefix, a first phase).

    Beam search expands each row into beams after the prompt pass, which such a cache is not set up
    for; and a row's positions must skip padding inside the prompt, which takes explicit position ids.
    """
    if not decoder_only or settings.generate_kwargs.get("num_beams", 1) != 1:
        return False
    return takes_position_ids(model)


def _adapters(names: list[str] | None) -> dict:
    """The peft kwarg that answers each row with its own adapter (nothing without names)."""
    return {} if names is None else {"adapter_names": names}


def _plan(prompts: Sequence[list[int]], settings: PredictSettings, share_prefixes: bool) -> list[PromptBatch]:
    if share_prefixes:
        return plan_batches(prompts, settings.batch_size)
    batches = batches_by_length([len(p) for p in prompts], settings.batch_size)
    return [PromptBatch(rows, [0] * len(rows)) for rows in batches]


@torch.no_grad()
def _with_shared_prefixes(
    model, rows: list[list[int]], shared: list[int], tokenizer, device, names: list[str] | None
) -> dict:
    """generate() inputs for `rows`, whose first `shared[r]` tokens are already in the cache
    (`shared_prefix.split_rows`: each distinct prefix run once; generate() extends the positions).
    `names`: the rows' peft adapters; a prefix is shared by the rows of one adapter, which runs it."""
    split = split_rows(rows, shared, tokenizer.pad_token_id, names)
    tensor = lambda lists: torch.tensor(lists, dtype=torch.long, device=device)  # noqa: E731
    adapters = _adapters(None if names is None else [names[r] for r in split.first_row])
    cache = prefix_cache(model, tensor(split.prefix_ids), tensor(split.prefix_mask), tensor(split.owner), **adapters)
    input_ids = tensor([split.prefix_ids[p] + rest for p, rest in zip(split.owner, split.rest_ids, strict=True)])
    attention = tensor([split.prefix_mask[p] + rest for p, rest in zip(split.owner, split.rest_mask, strict=True)])
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "position_ids": positions(attention),
        "cache": cache,
    }


def _token_logprobs(model, out) -> torch.Tensor:
    beam_indices = getattr(out, "beam_indices", None)
    return model.compute_transition_scores(out.sequences, out.scores, beam_indices, normalize_logits=True)


def _finish(tokenizer, ids: torch.Tensor, logprobs: torch.Tensor, eos_ids: list[int]) -> tuple[str, float, float]:
    kept, scores = [], []
    for token, logprob in zip(ids.tolist(), logprobs.tolist(), strict=True):
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
    return text, confidence, sum(scores)
