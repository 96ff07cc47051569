"""Length-grouped batches in random order (training/trainer.py: ShuffledLengthGroupedSampler)."""

import torch

from loraqa.training.trainer import ShuffledLengthGroupedSampler


def _batches(lengths, batch_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    order = list(ShuffledLengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    return order, [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def test_every_example_once():
    lengths = [(i * 37) % 301 + 5 for i in range(100)]
    order, _ = _batches(lengths, 8)
    assert sorted(order) == list(range(100))


def test_small_runs_are_grouped_into_sorted_slices():
    # 96 examples at batch 8: transformers' own sampler would not group at all (< 4 x 8 x ... )
    lengths = [(i * 53) % 97 + 3 for i in range(96)]  # distinct lengths
    by_length = sorted(range(96), key=lambda i: lengths[i], reverse=True)
    slices = {frozenset(by_length[i : i + 8]) for i in range(0, 96, 8)}
    _, batches = _batches(lengths, 8)
    assert {frozenset(b) for b in batches} == slices


def test_batches_are_not_fed_longest_first():
    lengths = list(range(10, 106))
    _, batches = _batches(lengths, 8, seed=3)
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest != sorted(longest, reverse=True)
    assert longest != sorted(longest)


def test_short_remainder_batch_comes_last():
    lengths = [(i * 29) % 89 + 1 for i in range(100)]
    for seed in range(5):
        _, batches = _batches(lengths, 8, seed=seed)
        assert [len(b) for b in batches] == [8] * 12 + [4]


def test_same_seed_same_order():
    lengths = [(i * 7) % 50 for i in range(64)]
    assert _batches(lengths, 4, seed=1)[0] == _batches(lengths, 4, seed=1)[0]
