"""Length-grouped batches in random order (training/trainer.py: ShuffledLengthGroupedSampler), and
batches that keep the questions of one paragraph together (GroupKeepingSampler)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loraqa.training.samplers import GroupKeepingSampler, ShuffledLengthGroupedSampler, fill_batches


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
    # ... and the order comes from the seed: a sampler that ignored it would pass the line above.
    assert _batches(lengths, 4, seed=1)[0] != _batches(lengths, 4, seed=2)[0]


# --- GroupKeepingSampler: the questions of one paragraph in one batch ---------------------------------


def _group_batches(groups, lengths, batch_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    order = list(GroupKeepingSampler(batch_size, groups, lengths, generator=generator))
    return order, [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _paragraph_groups(sizes):
    groups, start = [], 0
    for size in sizes:
        groups.append(list(range(start, start + size)))
        start += size
    return groups


def test_groups_that_fit_stay_whole_and_batches_stay_full():
    sizes = [(i * 7) % 5 + 1 for i in range(60)]  # 1-5 questions a paragraph, as SQuAD
    groups = _paragraph_groups(sizes)
    lengths = [100 + (g * 31) % 200 for g, size in enumerate(sizes) for _ in range(size)]
    for seed in range(3):
        order, batches = _group_batches(groups, lengths, 8, seed)
        assert sorted(order) == list(range(sum(sizes)))
        assert all(len(b) == 8 for b in batches[:-1]) and 0 < len(batches[-1]) <= 8
        split = [g for g in groups if len({i // 8 for i in (order.index(j) for j in g)}) > 1]
        assert len(split) <= len(batches) // 4, f"few groups are cut across batches: {len(split)}"


def test_a_group_larger_than_a_batch_is_cut_into_batches():
    order, batches = _group_batches([list(range(20))], [50] * 20, 8)
    assert sorted(order) == list(range(20)) and [len(b) for b in batches] == [8, 8, 4]


def test_groups_of_one_keep_the_length_grouping():
    lengths = [(i * 53) % 97 + 3 for i in range(96)]
    by_length = sorted(range(96), key=lambda i: lengths[i], reverse=True)
    slices = {frozenset(by_length[i : i + 8]) for i in range(0, 96, 8)}
    _, batches = _group_batches([[i] for i in range(96)], lengths, 8)
    assert {frozenset(b) for b in batches} == slices


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=40), st.integers(1, 10), st.integers(1, 10))
def test_fill_batches_covers_every_index_in_full_batches(sizes, batch_size, lookahead):
    units = _paragraph_groups(sizes)
    batches = fill_batches(units, batch_size, lookahead)
    assert sorted(i for b in batches for i in b) == list(range(sum(sizes)))
    assert all(len(b) == batch_size for b in batches[:-1]) and 0 < len(batches[-1]) <= batch_size
