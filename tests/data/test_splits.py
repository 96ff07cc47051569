"""Seeded sampling and the train/validation split that never shares a context."""

from __future__ import annotations

import random

import pytest

from loraqa.data import Answer, QARecord, sample_records, split_train_validation
from loraqa.data.splits import sample_paragraphs
from loraqa.errors import DataError


def make_records(n_contexts: int, seed: int = 0) -> list[QARecord]:
    """Contexts with 1 to 6 questions each, in an interleaved order so grouping is not trivial."""
    rng = random.Random(seed)
    records = [
        QARecord(f"c{c}-q{q}", f"context {c}", f"question {q} about {c}?", (Answer("context", 0),))
        for c in range(n_contexts)
        for q in range(rng.randint(1, 6))
    ]
    rng.shuffle(records)
    return records


RECORDS = make_records(60)


def test_sample_is_deterministic_and_seed_dependent():
    first = sample_records(RECORDS, 20, seed=1)
    assert first == sample_records(RECORDS, 20, seed=1)
    assert len(first) == 20 and len({r.id for r in first}) == 20
    assert first != sample_records(RECORDS, 20, seed=2)


def test_smaller_sample_is_a_prefix_of_a_larger_one():
    assert sample_records(RECORDS, 10, seed=3) == sample_records(RECORDS, 30, seed=3)[:10]


@pytest.mark.parametrize("n", [None, len(RECORDS), len(RECORDS) + 5])
def test_sample_keeps_everything_in_order(n):
    assert sample_records(RECORDS, n, seed=0) == RECORDS


def test_sample_does_not_touch_global_random_state():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    sample_records(RECORDS, 5, seed=9)
    assert random.random() == expected


def test_sample_rejects_negative_n():
    assert sample_records(RECORDS, 0, seed=0) == []
    with pytest.raises(ValueError):
        sample_records(RECORDS, -1, seed=0)


@pytest.mark.parametrize("n", [1, 13, 40, 150])
@pytest.mark.parametrize("seed", [0, 5])
def test_paragraph_sample_takes_whole_paragraphs_side_by_side(n, seed):
    sample = sample_paragraphs(RECORDS, n, seed=seed)
    assert len(sample) == n and len({r.id for r in sample}) == n
    contexts = [r.context for r in sample]
    runs = [c for i, c in enumerate(contexts) if i == 0 or c != contexts[i - 1]]
    assert len(runs) == len(set(runs)), "a paragraph's questions are not side by side"
    per_context = {c: sum(r.context == c for r in RECORDS) for c in runs}
    assert all(contexts.count(c) == per_context[c] for c in runs[:-1]), "only the last paragraph may be cut"
    assert sample == sample_paragraphs(RECORDS, n, seed=seed)


def test_paragraph_sample_grows_by_prefix_and_draws_fewer_contexts_than_questions():
    small, large = sample_paragraphs(RECORDS, 25, seed=3), sample_paragraphs(RECORDS, 90, seed=3)
    assert small == large[:25]
    assert len({r.context for r in large}) < len({r.context for r in sample_records(RECORDS, 90, seed=3)})
    assert sample_paragraphs(RECORDS, None, seed=3) == RECORDS
    with pytest.raises(ValueError):
        sample_paragraphs(RECORDS, -1, seed=0)


@pytest.mark.parametrize("validation_samples", [1, 7, 50, 120])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_split_has_no_context_leakage_and_exact_size(validation_samples, seed):
    train, validation = split_train_validation(RECORDS, validation_samples, seed)
    assert len(validation) == validation_samples
    assert not {r.context for r in train} & {r.context for r in validation}
    # Nothing is invented; only the surplus of the last validation context is dropped (< 6).
    assert {r.id for r in train} | {r.id for r in validation} <= {r.id for r in RECORDS}
    assert len(RECORDS) - 6 < len(train) + len(validation) <= len(RECORDS)
    # Input order is kept on both sides.
    position = {r.id: i for i, r in enumerate(RECORDS)}
    assert [position[r.id] for r in train] == sorted(position[r.id] for r in train)
    assert [position[r.id] for r in validation] == sorted(position[r.id] for r in validation)


def test_split_is_deterministic():
    assert split_train_validation(RECORDS, 40, 5) == split_train_validation(RECORDS, 40, 5)
    assert split_train_validation(RECORDS, 40, 5) != split_train_validation(RECORDS, 40, 6)


def test_split_zero_validation_keeps_all_for_training():
    assert split_train_validation(RECORDS, 0, 0) == (RECORDS, [])


def test_split_needs_enough_records():
    few = make_records(3)
    with pytest.raises(DataError, match="cannot take 500 validation questions"):
        split_train_validation(few, 500, 0, source="train.jsonl")
    with pytest.raises(DataError, match="keep any for training"):
        split_train_validation(few, len(few), 0)  # would take every context
    with pytest.raises(ValueError):
        split_train_validation(few, -1, 0)
