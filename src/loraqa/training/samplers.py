"""The order Trainer sees training examples in: length-grouped batches in a seeded random order, from
lengths already known (no pass over the data), a paragraph's questions kept together when the
formulation runs their shared prompt start once per batch, and every rank dealt its own share.

`QATrainer._get_train_sampler` (training/trainer.py) builds these; they hold no model state.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import BatchRebalanceSampler, LengthGroupedSampler, get_length_grouped_indices

from loraqa import distributed
from loraqa.errors import TrainingError


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """Batches of similar length, visited in random order.

    transformers' sampler sorts inside mega-batches of min(n // (4 x batch), 50) batches, so a run of
    fewer than 8 batches gets groups of one batch, i.e. no grouping at all, and 100-question runs
    only groups of 3 (measured padding share, SmolLM2, 96 questions at batch 8: 11.4% vs 3.1% with
    mega-batches of 50). Sorting inside 50-batch mega-batches alone would feed each mega-batch
    longest-first, a length curriculum nobody asked for; shuffling whole batches afterwards keeps
    the grouping and removes the order.
    """

    MEGA_BATCH_MULT = 50

    def __iter__(self):
        grouped = get_length_grouped_indices(
            self.lengths, self.batch_size, mega_batch_mult=self.MEGA_BATCH_MULT, generator=self.generator
        )
        return self._shuffled([grouped[i : i + self.batch_size] for i in range(0, len(grouped), self.batch_size)])

    def _shuffled(self, batches: list[list[int]]):
        # A short remainder batch must stay last, or every DataLoader batch after it would straddle two groups.
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        order = torch.randperm(len(batches), generator=self.generator).tolist()
        return iter([index for position in order for index in batches[position]] + [i for b in tail for i in b])


class GroupKeepingSampler(ShuffledLengthGroupedSampler):
    """Batches that keep each group (the questions of one paragraph) whole where they can.

    Groups are taken in random order and, with `by_length`, sorted by length inside mega-batches of
    50 batches, as the parent sorts questions. They fill batches of exactly `batch_size` (the last
    may be short, as the DataLoader cuts the stream): the room left in a batch takes the largest of
    the next LOOKAHEAD groups that fits, and a group is split across two batches only when none
    does. Groups of one are batched by length as the parent batches them. Batches are then visited
    in random order.
    """

    LOOKAHEAD = 8

    def __init__(
        self, batch_size: int, groups: list[list[int]], lengths: list[int], by_length: bool = True, generator=None
    ):
        super().__init__(batch_size, lengths=lengths, generator=generator)
        self.groups = groups
        self.by_length = by_length

    def __iter__(self):
        longest = lambda group: max(self.lengths[i] for i in group)  # noqa: E731
        order = [self.groups[g] for g in torch.randperm(len(self.groups), generator=self.generator).tolist()]
        units: list[list[int]] = []
        mega, start = self.MEGA_BATCH_MULT * self.batch_size, 0
        while start < len(order):
            end, size = start, 0
            while end < len(order) and size < mega:
                size += len(order[end])
                end += 1
            chunk = order[start:end]
            units.extend(sorted(chunk, key=longest, reverse=True) if self.by_length else chunk)
            start = end
        return self._shuffled(fill_batches(units, self.batch_size, self.LOOKAHEAD))


class RankBatches(BatchRebalanceSampler):
    """This rank's per-device batches of an index sampler's epoch, the same epoch on every rank.

    Every rank draws the same order (a generator seeded with seed + epoch, not the global RNG,
    which dropout advances differently per formulation and which Trainer restores per rank), cuts it
    into per-device batches of `batch_size`, and deals them round-robin: rank r takes batches r,
    r + W, ... of each round of W. The last round's examples are spread over all ranks (sizes
    differing by at most one; fewer examples than ranks join the previous round's batches), so
    every rank runs the same number of batches and no example is trained twice or skipped in an
    epoch, unlike the padding that accelerate's batch sharding and DistributedSampler use.

    Subclassing BatchRebalanceSampler is how Trainer (5.x) knows a batch sampler is rank-aware:
    it is then passed as `batch_sampler`, accelerate's re-sharding is turned off and `set_epoch`
    reaches it. Its rebalancing is not used.
    """

    def __init__(self, sampler, batch_size: int, seed: int, ranks: int = 1, rank: int = 0):
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed
        self.ranks, self.rank, self.epoch = ranks, rank, 0
        if len(sampler) < ranks:
            raise TrainingError(f"{len(sampler)} training examples cannot be shared by {ranks} processes")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        per_round = self.batch_size * self.ranks
        full, rest = divmod(len(self.sampler), per_round)
        return full + (1 if rest >= self.ranks else 0)

    def __iter__(self):
        self.sampler.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(deal_batches(list(self.sampler), self.batch_size, self.ranks)[self.rank])


def deal_batches(order: list[int], batch_size: int, ranks: int) -> list[list[list[int]]]:
    """`order` as per-device batches for each of `ranks` ranks (see `RankBatches`): result[r] is
    rank r's batches; all ranks get the same number, together holding every index once."""
    per_round = batch_size * ranks
    full = len(order) // per_round
    shares: list[list[list[int]]] = [
        [order[k * per_round + r * batch_size : k * per_round + (r + 1) * batch_size] for k in range(full)]
        for r in range(ranks)
    ]
    rest = order[full * per_round :]
    if len(rest) >= ranks:  # one more, smaller batch on every rank
        for r in range(ranks):
            start, end = distributed.shard_bounds(len(rest), ranks, r)
            shares[r].append(rest[start:end])
    else:  # too few for a batch each: they join the last full round, one per rank
        for r, index in enumerate(rest):
            shares[r][-1] = shares[r][-1] + [index]
    return shares


def fill_batches(units: list[list[int]], batch_size: int, lookahead: int) -> list[list[int]]:
    """Index batches of exactly `batch_size` (the last may be short) from `units` in about their
    order, keeping a unit in one batch unless none of the next `lookahead` fits the room left."""
    pending = [list(u) for u in units if u]
    batches: list[list[int]] = []
    current: list[int] = []
    while pending:
        room = batch_size - len(current)
        fitting = [k for k in range(min(lookahead, len(pending))) if len(pending[k]) <= room]
        if fitting:
            current.extend(pending.pop(max(fitting, key=lambda k: (len(pending[k]), -k))))
        else:
            unit = pending.pop(0)
            current.extend(unit[:room])
            pending.insert(0, unit[room:])
        if len(current) == batch_size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches
