"""Answer requests that arrive together in one model call: a short window, a maximum batch, one key.

`submit(key, item)` queues an item and returns a future. The loop takes the first waiting item and
everything already queued behind it (up to `max_batch`), groups them by key (adapter and decoding:
only items with the same key can share a model call), and runs each group through
`run_batch(key, items)` in a single worker thread, so the event loop stays free (health checks, new
requests) while the model works. Items that arrive while a batch runs wait in the queue and go
together in the next batch, without waiting again.

The collection window only waits for company that is expected: for as many items as the previous
batch held, at most `window_s` after the first item's arrival. A lone client (its previous batch was
one item, nothing else queued) is answered at once, with no window; under concurrent load, where
the clients answered together come back within milliseconds of each other, the window gathers
them into one call again instead of alternating a batch of one with a batch of the rest.

A future cancelled before its batch starts (client timed out or went away) is dropped, freeing its
slot; `max_pending` bounds the queue, beyond it `submit` raises `QueueFull`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

RunBatch = Callable[[Hashable, list[Any]], list[Any]]


class QueueFull(Exception):
    """More items are waiting than the server takes."""


@dataclass
class _Pending:
    key: Hashable
    item: Any
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, run_batch: RunBatch, max_batch: int = 16, window_s: float = 0.005, max_pending: int = 1024):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_pending = max_pending
        self.busy = False  # a batch is running in the worker thread
        self.batches = 0  # how many model calls ran (tests and /health read it)
        self._company = 1  # items in the last collected batch: how many to wait for next time
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loraqa-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._worker.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def submit(self, key: Hashable, item: Any) -> asyncio.Future:
        """Queue one item; the future resolves to run_batch's result for it."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called")
        if self._queue.qsize() >= self.max_pending:
            raise QueueFull(f"{self.max_pending} questions are already waiting")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(key, item, future))
        return future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            for key, group in _by_key(batch):
                for start in range(0, len(group), self.max_batch):
                    await self._run(loop, key, group[start : start + self.max_batch])

    async def _collect(self) -> list[_Pending]:
        first = await self._queue.get()
        batch = [first]
        self._take_queued(batch)
        expected = min(self._company, self.max_batch)
        deadline = first.arrived + self.window_s
        while len(batch) < expected:  # company is expected: wait for it, at most until the deadline
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
            self._take_queued(batch)
        self._company = len(batch)
        return batch

    def _take_queued(self, batch: list[_Pending]) -> None:
        """Move what is already waiting into the batch, up to max_batch, without waiting."""
        while len(batch) < self.max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _run(self, loop, key: Hashable, group: list[_Pending]) -> None:
        live = [p for p in group if not p.future.done()]  # cancelled ones have left: free their slots
        if not live:
            return
        self.busy = True
        try:
            results = await loop.run_in_executor(self._worker, self.run_batch, key, [p.item for p in live])
        except Exception as exc:  # noqa: BLE001 - the error belongs to the requests, not to the loop
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            self.busy = False
            self.batches += 1
        for p, result in zip(live, results):
            if not p.future.done():
                p.future.set_result(result)


def _by_key(batch: list[_Pending]) -> list[tuple[Hashable, list[_Pending]]]:
    groups: dict[Hashable, list[_Pending]] = {}
    for pending in batch:
        groups.setdefault(pending.key, []).append(pending)
    return list(groups.items())
