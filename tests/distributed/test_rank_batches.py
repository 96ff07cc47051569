"""Each rank's share of an epoch's batches (training/trainer.py: RankBatches, deal_batches): the
shares are disjoint, together hold every index once, every rank runs as many batches, and the
order is the seed's on every rank whatever the global RNG holds."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loraqa.training.samplers import GroupKeepingSampler, RankBatches, ShuffledLengthGroupedSampler, deal_batches


def _shares(make_sampler, batch, ranks, seed=7, epoch=0):
    shares = []
    for rank in range(ranks):
        torch.manual_seed(1000 + rank)  # ranks' global RNGs differ (dropout, restored rng_state_<rank>)
        sampler = RankBatches(make_sampler(), batch, seed, ranks, rank)
        sampler.set_epoch(epoch)
        shares.append(list(sampler))
        assert len(shares[-1]) == len(sampler)
    return shares


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.parametrize("count", [24, 25, 31, 7])
def test_rank_shares_cover_every_index_once(ranks, count):
    lengths = [(i * 37) % 61 + 3 for i in range(count)]
    shares = _shares(lambda: ShuffledLengthGroupedSampler(4 * ranks, lengths=lengths), 4, ranks)
    flat = [i for share in shares for batch in share for i in batch]
    assert sorted(flat) == list(range(count))  # disjoint and complete: nothing twice, nothing skipped
    assert len({len(share) for share in shares}) == 1  # same number of steps on every rank
    assert all(batch for share in shares for batch in share)


def test_same_seed_same_epoch_on_every_rank_and_epochs_differ():
    lengths = [(i * 11) % 40 + 2 for i in range(40)]
    make = lambda: ShuffledLengthGroupedSampler(8, lengths=lengths)  # noqa: E731
    first = _shares(make, 4, 2, epoch=0)
    assert _shares(make, 4, 2, epoch=0) == first  # the same whatever each rank's global RNG holds
    assert _shares(make, 4, 2, epoch=1) != first
    # Two ranks at batch 4 train, step by step, the examples one process trains at batch 8.
    single = _shares(make, 8, 1)[0]
    assert [sorted(a + b) for a, b in zip(*first, strict=True)] == [sorted(batch) for batch in single]


def test_group_keeping_batches_are_dealt_whole():
    groups = [list(range(i, i + 3)) for i in range(0, 30, 3)]
    lengths = [50] * 30
    shares = _shares(lambda: GroupKeepingSampler(3, groups, lengths), 3, 2)
    batches = [frozenset(b) for share in shares for b in share]
    assert sorted(i for b in batches for i in b) == list(range(30))
    assert {frozenset(g) for g in groups} == set(batches)  # each paragraph one batch, on one rank


def test_fewer_examples_than_ranks_is_refused():
    from loraqa.errors import TrainingError

    with pytest.raises(TrainingError, match="2 training examples cannot be shared by 3 processes"):
        RankBatches(ShuffledLengthGroupedSampler(3, lengths=[5, 6]), 1, 0, 3, 0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 80), st.integers(1, 6), st.integers(1, 4))
def test_deal_batches_property(count, batch, ranks):
    if count < ranks:
        return
    shares = deal_batches(list(range(count)), batch, ranks)
    assert sorted(i for s in shares for b in s for i in b) == list(range(count))
    assert len({len(s) for s in shares}) == 1 and all(b for s in shares for b in s)
    assert all(len(b) <= batch + 1 for s in shares for b in s)
