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

An item belongs to its request alone:
- a future cancelled while it waits (client timed out or went away) leaves the queue at once, so
  it neither holds one of the `max_pending` slots (beyond them `submit` raises `QueueFull`) nor
  reaches the model;
- when a model call fails, each of its items is retried alone, so the failure reaches only the
  item that causes it and its neighbours get their answers.

`drain(timeout_s)` is the graceful shutdown: new items are refused (`ShuttingDown`), what waits or
runs is answered as usual, and whatever is still unanswered `timeout_s` later fails with
`ShuttingDown`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

RunBatch = Callable[[Hashable, list[Any]], list[Any]]


class QueueFull(Exception):
    """More items are waiting than the server takes."""


class ShuttingDown(Exception):
    """The server is shutting down: the item was refused, or not answered within the drain timeout."""


@dataclass(eq=False)  # identity: withdrawing an item removes that one, not an equal one
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
        self.busy = False  # a model call is running in the worker thread (set there, so true until it returns)
        self.batches = 0  # how many model calls ran (tests and /health read it)
        self.draining = False  # drain() was called: no new items
        self._company = 1  # items in the last collected batch: how many to wait for next time
        self._waiting: deque[_Pending] = deque()
        self._running: list[_Pending] = []
        self._arrived: asyncio.Event | None = None  # set when an item is queued
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loraqa-model")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._loop_batches())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def in_worker(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(*args)` in the model's worker thread, between model calls (changes to a model
        that must never overlap one: attaching or deleting a peft adapter)."""
        return await self._loop.run_in_executor(self._worker, function, *args)

    @property
    def pending(self) -> int:
        """Items waiting for the model (withdrawn ones have left)."""
        return len(self._waiting)

    def submit(self, key: Hashable, item: Any) -> asyncio.Future:
        """Queue one item; the future resolves to run_batch's result for it. Cancel it to withdraw it."""
        if self._arrived is None:
            raise RuntimeError("Batcher.start() was not called")
        if self.draining:
            raise ShuttingDown("the server is shutting down")
        if len(self._waiting) >= self.max_pending:
            raise QueueFull(f"{self.max_pending} questions are already waiting")
        pending = _Pending(key, item, self._loop.create_future())
        pending.future.add_done_callback(lambda _: self._withdraw(pending))
        self._waiting.append(pending)
        self._arrived.set()
        return pending.future

    def drain(self, timeout_s: float) -> None:
        """Refuse new items; fail with `ShuttingDown` whatever is unanswered `timeout_s` from now."""
        if self.draining:
            return
        self.draining = True
        self._loop.call_later(max(timeout_s, 0.0), self._drop_unanswered)

    def drain_threadsafe(self, timeout_s: float) -> None:
        """`drain`, callable from a signal handler or another thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.drain, timeout_s)

    def _drop_unanswered(self) -> None:
        for pending in [*self._waiting, *self._running]:
            if not pending.future.done():
                pending.future.set_exception(ShuttingDown("not answered within the drain timeout"))
        self._waiting.clear()

    def _withdraw(self, pending: _Pending) -> None:
        if pending.future.cancelled():
            try:
                self._waiting.remove(pending)
            except ValueError:
                pass  # already taken into a batch: _run skips it

    async def _loop_batches(self) -> None:
        while True:
            batch = await self._collect()
            for key, group in _by_key(batch):
                for start in range(0, len(group), self.max_batch):
                    await self._run(key, group[start : start + self.max_batch])

    async def _collect(self) -> list[_Pending]:
        await self._wait_for_items(None)
        first = self._waiting[0]
        batch: list[_Pending] = []
        self._take_queued(batch)
        expected = min(self._company, self.max_batch)
        deadline = first.arrived + self.window_s
        while len(batch) < expected:  # company is expected: wait for it, at most until the deadline
            if not await self._wait_for_items(deadline):
                break
            self._take_queued(batch)
        self._company = len(batch)
        return batch

    async def _wait_for_items(self, deadline: float | None) -> bool:
        """Wait until an item is queued (True) or the deadline passes (False)."""
        while not self._waiting:
            self._arrived.clear()
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    def _take_queued(self, batch: list[_Pending]) -> None:
        """Move what is already waiting into the batch, up to max_batch, without waiting."""
        while len(batch) < self.max_batch and self._waiting:
            batch.append(self._waiting.popleft())

    async def _run(self, key: Hashable, group: list[_Pending]) -> None:
        live = [p for p in group if not p.future.done()]  # withdrawn while the batch was collected
        if not live:
            return
        try:
            results = await self._call(key, live)
        except Exception as exc:  # noqa: BLE001 - the error belongs to the requests, not to the loop
            if len(live) == 1:
                _settle(live[0], exception=exc)
                return
            # One item's failure must not fail its neighbours: each alone. Said once per batch, as a
            # batch answered item by item costs up to its size in model calls.
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            print(
                f"loraqa: a batch of {len(live)} failed ({type(exc).__name__}: {first_line}); answering each alone",
                file=sys.stderr,
                flush=True,
            )
            for pending in live:
                await self._run(key, [pending])
            return
        for pending, result in zip(live, results, strict=True):
            _settle(pending, result=result)

    async def _call(self, key: Hashable, live: list[_Pending]) -> list[Any]:
        self._running = live
        try:
            results = await self._loop.run_in_executor(self._worker, self._in_worker, key, [p.item for p in live])
        finally:
            self._running = []
        if len(results) != len(live):
            raise RuntimeError(f"run_batch gave {len(results)} results for {len(live)} items")
        return results

    def _in_worker(self, key: Hashable, items: list[Any]) -> list[Any]:
        self.busy = True
        try:
            return self.run_batch(key, items)
        finally:
            self.busy = False
            self.batches += 1


def _settle(pending: _Pending, result: Any = None, exception: Exception | None = None) -> None:
    if pending.future.done():  # withdrawn, or dropped by the drain timeout meanwhile
        return
    if exception is not None:
        pending.future.set_exception(exception)
    else:
        pending.future.set_result(result)


def _by_key(batch: list[_Pending]) -> list[tuple[Hashable, list[_Pending]]]:
    groups: dict[Hashable, list[_Pending]] = {}
    for pending in batch:
        groups.setdefault(pending.key, []).append(pending)
    return list(groups.items())
