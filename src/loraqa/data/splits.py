"""Seeded, reproducible subsets and splits of a list of records.

Both functions use their own `random.Random(seed)`, so they neither read nor disturb the global
random state, and give the same answer for the same records and seed on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from loraqa.data.records import QARecord
from loraqa.errors import DataError


def sample_records(records: Sequence[QARecord], n: int | None, seed: int) -> list[QARecord]:
    """`n` records chosen by a seeded shuffle, in shuffled order; all of them (in order) when
    `n` is None or at least `len(records)`.

    For one seed, a smaller sample is a prefix of a larger one, so growing `n` only adds records.
    """
    if n is None or n >= len(records):
        return list(records)
    if n < 0:
        raise ValueError(f"the number of samples must be at least 0, not {n}")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    return [records[i] for i in order[:n]]


def sample_paragraphs(records: Sequence[QARecord], n: int | None, seed: int) -> list[QARecord]:
    """`n` records taken as whole paragraphs: contexts in a seeded order, each with all its
    questions (in input order, side by side), the last one cut to make exactly `n`; all of them
    (in order) when `n` is None or at least `len(records)`.

    As with `sample_records`, a smaller sample is a prefix of a larger one for one seed.
    """
    if n is None or n >= len(records):
        return list(records)
    if n < 0:
        raise ValueError(f"the number of samples must be at least 0, not {n}")
    groups, contexts = _contexts_in_seeded_order(records, seed)
    chosen: list[int] = []
    for context in contexts:
        if len(chosen) >= n:
            break
        chosen.extend(groups[context])
    return [records[i] for i in chosen[:n]]


def split_train_validation(
    records: Sequence[QARecord], validation_samples: int, seed: int, *, source: str = "training data"
) -> tuple[list[QARecord], list[QARecord]]:
    """Split into (train, validation) with exactly `validation_samples` validation questions and
    no context on both sides.

    Contexts are drawn in a seeded order and all their questions go to validation until it holds
    at least `validation_samples`; the surplus questions of the last context drawn are dropped
    (giving them to train would leak that context). Both lists keep the input order. Raises
    `DataError` (naming `source`) if that would leave no context for training.
    """
    if validation_samples < 0:
        raise ValueError(f"validation_samples must be at least 0, not {validation_samples}")
    groups, contexts = _contexts_in_seeded_order(records, seed)
    chosen: list[int] = []
    taken = 0
    while len(chosen) < validation_samples and taken < len(contexts):
        chosen.extend(groups[contexts[taken]])
        taken += 1
    if validation_samples > 0 and taken == len(contexts):  # also covers too few questions in all
        raise DataError(
            source,
            f"cannot take {validation_samples} validation questions and keep any for training: there are "
            f"{len(records)} questions about {len(contexts)} contexts",
        )
    validation = set(chosen[:validation_samples])
    held_out = {i for c in contexts[:taken] for i in groups[c]}
    train = [r for i, r in enumerate(records) if i not in held_out]
    return train, [records[i] for i in sorted(validation)]


def _contexts_in_seeded_order(records: Sequence[QARecord], seed: int) -> tuple[dict[str, list[int]], list[str]]:
    """Each context's question indices (in input order), and the contexts in a seeded order."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record.context, []).append(index)
    contexts = list(groups)
    random.Random(seed).shuffle(contexts)
    return groups, contexts
