"""Who this process is in a `torchrun` / `accelerate launch` job, and the few collectives loraqa needs.

A plain `loraqa train` is a world of one: every function here then answers as rank 0 of 1 and does
no communication, so callers need no `if distributed` of their own. Under a launcher (WORLD_SIZE >
1 in the environment) `init_process_group` joins the job through accelerate's `PartialState`, the
same state transformers' Trainer uses later: gloo on CPU, NCCL on CUDA, each rank on
cuda:LOCAL_RANK.

The run directory has one owner, rank 0 (see `run_on_main`); the others compute (train their share
of the batches, answer their share of the questions) and never write there. Objects travel with
`all_gather_object` / `broadcast_object_list`, which gloo supports, so the same code runs on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def launched() -> bool:
    """Whether a launcher started this process as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """Whether a process group of more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its machine: the CUDA device it uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0: the one process that writes the run directory and prints the results."""
    return rank() == 0


def init_process_group(cpu: bool) -> None:
    """Join the launcher's job (no-op for a single process). `cpu`: use gloo even where CUDA exists."""
    if not launched() or is_distributed():
        return
    from accelerate import (
        PartialState,  # the state Trainer reuses, so one process group, one backend
    )

    PartialState(cpu=cpu)
    if not cpu and torch.cuda.is_available():
        torch.cuda.set_device(local_rank())


def leave_process_group() -> None:
    """Destroy this process's group, if one is up (the end of every command under a launcher).

    Left standing, gloo's worker threads meet the interpreter's teardown and now and then abort the
    process (SIGABRT, "terminate called without an active exception"): CI saw it on a rank of
    `loraqa eval` that finished before rank 0. Destroying needs no peer, so a rank may leave first.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's `value`, on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result, or the exception it raised, to every rank.

    Others wait meanwhile; a refusal on rank 0 (a run directory in use, say) is raised on every
    rank, so the whole job stops with the same one-line error instead of hanging at a barrier.
    """
    if not is_distributed():
        return fn()
    outcome: tuple[bool, object] = (True, None)
    if is_main():
        try:
            outcome = (True, fn())
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank just below
            outcome = (False, exc)
    ok, value = broadcast(outcome)
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def shard_bounds(count: int, ranks: int | None = None, index: int | None = None) -> tuple[int, int]:
    """The contiguous [start, end) share of `count` items for rank `index` of `ranks`: sizes differ by
    at most one, earlier ranks take the extra. Contiguous keeps a paragraph's questions together."""
    ranks = world_size() if ranks is None else ranks
    index = rank() if index is None else index
    base, extra = divmod(count, ranks)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def shard(items: Sequence[T]) -> Sequence[T]:
    """This rank's contiguous share of `items` (all of them for a single process)."""
    start, end = shard_bounds(len(items))
    return items[start:end]


def gather(items: list[T]) -> list[T]:
    """Every rank's `items`, concatenated in rank order, on every rank (the inverse of `shard`)."""
    if not is_distributed():
        return items
    parts: list[list[T] | None] = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]  # type: ignore[union-attr]


def gather_objects(value: T) -> list[T]:
    """One object from each rank, in rank order, on every rank."""
    if not is_distributed():
        return [value]
    parts: list[T | None] = [None] * world_size()
    dist.all_gather_object(parts, value)
    return parts  # type: ignore[return-value]
