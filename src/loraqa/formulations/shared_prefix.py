"""Causal prompts that share a leading run of tokens: that run goes through the model once.

A causal prompt is template + context + question. Every prompt shares the template (39 tokens of
SmolLM2's ~220: chat template and instruction), and SQuAD asks ~5 questions per paragraph, so
questions on one paragraph share ~85% of their tokens. Generation and training both run each
distinct shared start once (`prefix_cache`), copy its KV cache to the rows that share it, and run
only the rest of each row (`split_rows`; `docs/performance.md`).

Generation (`plan_batches`): prompts sorted by their token ids, so those on one paragraph sit
together; a run of prompts sharing more than what all prompts share (the template) is a group.
Groups are packed whole into batches, several paragraphs to a batch: a decoding step for 32 rows
costs about twice one for 8 (SmolLM2: 188 vs 94 ms), so full batches decode cheaper per question.
Prompts in no group are batched by length, sharing the template.

Training (`training_split`): the sampler already put a paragraph's questions in one batch
(`Formulation.prompt_groups`); each row's split point is its group's shared start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from loraqa.formulations.base import batches_by_length

# Below this many shared tokens, a separate prefix pass is not worth its overhead.
MIN_SHARED_TOKENS = 16


@dataclass(frozen=True)
class PromptBatch:
    rows: list[int]  # prompt indices
    shared: list[int]  # per row, the leading tokens run in the prefix pass; all 0: no prefix pass


@dataclass(frozen=True)
class SplitRows:
    """Rows split into a prefix pass and a second pass, as token-id lists.

    The distinct prefixes are left-padded among themselves; each row's rest is left-padded to the
    longest rest, so the padding of a row sits between its prefix and its rest and every row still
    ends in the last column. Position ids must then come from the joined mask (`positions`), so a
    row's positions run on from its prefix across that padding as if it were not there.
    """

    prefix_ids: list[list[int]]
    prefix_mask: list[list[int]]
    owner: list[int]  # per row, the index of its prefix
    rest_ids: list[list[int]]
    rest_mask: list[list[int]]
    first_row: list[int]  # per prefix, the first row that owns it (whose adapter runs it)


def split_rows(
    rows: Sequence[Sequence[int]], split: Sequence[int], pad: int, adapters: Sequence[str] | None = None
) -> SplitRows:
    """`adapters` (one peft adapter name per row): a prefix is shared only by rows of one adapter, whose
    weights make its cache; equal tokens under two adapters are two prefixes."""
    distinct: dict[tuple, int] = {}
    keys = [
        (None if adapters is None else adapters[r], tuple(ids[:n]))
        for r, (ids, n) in enumerate(zip(rows, split, strict=True))
    ]
    owner = [distinct.setdefault(key, len(distinct)) for key in keys]
    longest = max(len(p) for _, p in distinct)
    width = max(len(ids) - n for ids, n in zip(rows, split, strict=True))
    rests = [list(ids[n:]) for ids, n in zip(rows, split, strict=True)]
    return SplitRows(
        prefix_ids=[[pad] * (longest - len(p)) + list(p) for _, p in distinct],
        prefix_mask=[[0] * (longest - len(p)) + [1] * len(p) for _, p in distinct],
        owner=owner,
        first_row=[owner.index(i) for i in range(len(distinct))],
        rest_ids=[[pad] * (width - len(r)) + r for r in rests],
        rest_mask=[[0] * (width - len(r)) + [1] * len(r) for r in rests],
    )


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only unpadded tokens (left padding, or padding inside a row)."""
    return (attention_mask.cumsum(dim=1) - 1).clamp(min=0)


def prefix_cache(model, prefix_ids: torch.Tensor, prefix_mask: torch.Tensor, owner: torch.Tensor, **adapters):
    """One pass over the distinct prefixes; their KV cache, copied to the rows that own them.
    `adapters`: peft's `adapter_names` for the prefixes, when a batch names its adapter per row.

    The copy is an index, so in training the gradient of every row reaches its prefix's pass,
    summed: the same gradient as running the prefix in each row.
    """
    cache = model(
        input_ids=prefix_ids,
        attention_mask=prefix_mask,
        position_ids=positions(prefix_mask),
        use_cache=True,
        logits_to_keep=1,  # only the cache is wanted, not the prefix's logits
        **adapters,
    ).cache
    cache.batch_select_indices(owner)
    return cache


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):  # the shorter one ends the common prefix
        if x != y:
            break
        n += 1
    return n


def group_by_shared_start(prompts: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """Runs of prompts (sorted by token ids) that share more than what all of them share, and each
    run's shared length (0 for a run of one, or when the run shares too little to be worth a pass)."""
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))
    # What every prompt shares (the template): sorted, the first and the last share the least.
    common = common_prefix_length(prompts[order[0]], prompts[order[-1]]) if order else 0
    groups: list[list[int]] = []
    for i in order:
        # Sorted order makes the prefix shared with a group's first prompt the group's common prefix.
        if groups and common_prefix_length(prompts[groups[-1][0]], prompts[i]) >= common + MIN_SHARED_TOKENS:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups, [_shared_length(prompts, group) if len(group) > 1 else 0 for group in groups]


def plan_batches(prompts: Sequence[Sequence[int]], batch_size: int) -> list[PromptBatch]:
    """Batches of at most `batch_size` prompt indices covering every prompt once.

    A row's shared length is always shorter than its prompt (a token is left to run) and, when not
    0, at least MIN_SHARED_TOKENS.
    """
    groups, shared = group_by_shared_start(prompts)
    loose = [i for group, n in zip(groups, shared, strict=True) if not n for i in group]
    groups, shared = [g for g, n in zip(groups, shared, strict=True) if n], [n for n in shared if n]
    batches = []
    for group_rows in _pack(groups, shared, batch_size):
        batches.append(_batch(prompts, [i for i, _ in group_rows], [n for _, n in group_rows]))
    for rows in batches_by_length([len(prompts[i]) for i in loose], batch_size):
        rows = [loose[r] for r in rows]
        batches.append(_batch(prompts, rows, [_shared_length(prompts, rows)] * len(rows)))
    return batches


def training_split(prompts: Sequence[Sequence[int]]) -> list[int] | None:
    """Per prompt of one training batch, how many leading tokens the prefix pass runs; None when no
    two prompts share a start worth running once.

    A prompt in a group runs the group's shared start there. A prompt in no group runs all but its
    last token there, so the second pass, padded to its longest row, stays as short as the questions
    and answers: what training pays for is every position of both passes.
    """
    groups, shared = group_by_shared_start(prompts)
    if not any(shared):
        return None
    split = [0] * len(prompts)
    for group, n in zip(groups, shared, strict=True):
        for i in group:
            split[i] = n or max(len(prompts[i]) - 1, 0)
    return split


def _batch(prompts: Sequence[Sequence[int]], rows: list[int], shared: list[int]) -> PromptBatch:
    # When no two rows share their prefix, a prefix pass only splits one pass in two (batch 1, say).
    if len({tuple(prompts[i][:n]) for i, n in zip(rows, shared, strict=True)}) == len(rows):
        shared = [0] * len(rows)
    return PromptBatch(rows, shared)


def _shared_length(prompts: Sequence[Sequence[int]], rows: list[int]) -> int:
    first = prompts[rows[0]]
    shared = min(common_prefix_length(first, prompts[i]) for i in rows)
    shared = min(shared, min(len(prompts[i]) for i in rows) - 1)
    return shared if shared >= MIN_SHARED_TOKENS else 0


def _pack(groups: list[list[int]], shared: list[int], batch_size: int) -> list[list[tuple[int, int]]]:
    """(row, shared length) batches: groups longest prefix first (little left padding among the
    prefixes of one batch), each kept whole unless it is larger than a batch."""
    batches: list[list[tuple[int, int]]] = []
    for g in sorted(range(len(groups)), key=lambda g: -shared[g]):
        rows = [(i, shared[g]) for i in groups[g]]
        if batches and len(batches[-1]) + len(rows) <= batch_size:
            batches[-1].extend(rows)
            continue
        batches.extend(rows[start : start + batch_size] for start in range(0, len(rows), batch_size))
    return batches
