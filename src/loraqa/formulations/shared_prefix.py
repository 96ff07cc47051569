"""Batches for causal generation whose prompts share a leading run of tokens, run once.

A causal prompt is template + context + question. Every prompt shares the template (39 tokens of
SmolLM2's ~220: chat template and instruction), and SQuAD asks ~5 questions per paragraph, so
questions on one paragraph share ~85% of their tokens. On a CPU the prompt pass dominates
generation time, so `generate_answers` runs each distinct shared prefix once, copies its KV cache
to the rows that share it, and runs only the rest of each prompt (`docs/performance.md`).

The plan: prompts sorted by their token ids, so those on one paragraph sit together; a run of
prompts sharing more than what all prompts share (the template) is a group. Groups are packed whole
into batches, several paragraphs to a batch: a decoding step for 32 rows costs about twice one for
8 (SmolLM2: 188 vs 94 ms), so full batches decode cheaper per question. Prompts in no group are
batched by length, sharing the template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loraqa.formulations.base import batches_by_length

# Below this many shared tokens, a separate prefix pass is not worth its overhead.
MIN_SHARED_TOKENS = 16


@dataclass(frozen=True)
class PromptBatch:
    rows: list[int]  # prompt indices
    shared: list[int]  # per row, the leading tokens run in the prefix pass; all 0: no prefix pass


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def plan_batches(prompts: Sequence[Sequence[int]], batch_size: int) -> list[PromptBatch]:
    """Batches of at most `batch_size` prompt indices covering every prompt once.

    A row's shared length is always shorter than its prompt (a token is left to run) and, when not
    0, at least MIN_SHARED_TOKENS.
    """
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
    shared = [_shared_length(prompts, group) if len(group) > 1 else 0 for group in groups]
    loose = [i for group, n in zip(groups, shared) if not n for i in group]
    groups, shared = [g for g, n in zip(groups, shared) if n], [n for n in shared if n]
    batches = []
    for group_rows in _pack(groups, shared, batch_size):
        batches.append(_batch(prompts, [i for i, _ in group_rows], [n for _, n in group_rows]))
    for rows in batches_by_length([len(prompts[i]) for i in loose], batch_size):
        rows = [loose[r] for r in rows]
        batches.append(_batch(prompts, rows, [_shared_length(prompts, rows)] * len(rows)))
    return batches


def _batch(prompts: Sequence[Sequence[int]], rows: list[int], shared: list[int]) -> PromptBatch:
    # When no two rows share their prefix, a prefix pass only splits one pass in two (batch 1, say).
    if len({tuple(prompts[i][:n]) for i, n in zip(rows, shared)}) == len(rows):
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
