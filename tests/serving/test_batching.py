"""The batcher's collection rule, without a model: when a question waits for company and when not.

A lone client must not pay the collection window (issue 17: "a single client sees no added
latency beyond the window"; here: none at all), while questions that arrive during a running
batch, or clients that were answered together and come back together, still share a model call.
The windows are set to seconds, so waiting them out would show plainly in the elapsed times.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from loraqa.serving.batching import Batcher, QueueFull, ShuttingDown

WINDOW_S = 5.0  # long enough that waiting it would fail every "at once" check below
AT_ONCE_S = 2.0  # generous: the machine may be loaded, but this is far below the window


class Recorder:
    """run_batch that records each call's items; with `hold_first`, the first call blocks until released."""

    def __init__(self, hold_first: bool = False):
        self.calls: list[tuple] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, key, items):
        self.calls.append((key, list(items)))
        self.started.set()
        assert self.release.wait(10)
        return [f"{key}:{item}" for item in items]


def run(coroutine_function, *args):
    return asyncio.run(coroutine_function(*args))


async def _with_batcher(recorder: Recorder, body, max_batch: int = 16, window_s: float = WINDOW_S):
    batcher = Batcher(recorder, max_batch=max_batch, window_s=window_s)
    await batcher.start()
    try:
        return await asyncio.wait_for(body(batcher), 30)
    finally:
        await batcher.stop()


def test_a_lone_question_is_answered_without_waiting_the_window():
    recorder = Recorder()

    async def body(batcher):
        elapsed = []
        for item in ("a", "b", "c"):  # one client, one question at a time
            started = time.perf_counter()
            assert await batcher.submit("k", item) == f"k:{item}"
            elapsed.append(time.perf_counter() - started)
        return elapsed

    elapsed = run(_with_batcher, recorder, body)
    assert max(elapsed) < AT_ONCE_S, elapsed  # the old rule waited the whole window every time
    assert [items for _, items in recorder.calls] == [["a"], ["b"], ["c"]]


def test_questions_arriving_while_a_batch_runs_share_the_next_call():
    recorder = Recorder(hold_first=True)

    async def body(batcher):
        first = batcher.submit("k", "a")
        assert await asyncio.to_thread(recorder.started.wait, 10)  # "a" is in the model, alone
        later = [batcher.submit("k", item) for item in ("b", "c", "d")] + [batcher.submit("other", "e")]
        assert batcher.pending == 4
        released = time.perf_counter()
        recorder.release.set()
        answers = await asyncio.gather(first, *later)
        return answers, time.perf_counter() - released

    answers, after_release = run(_with_batcher, recorder, body)
    assert answers == ["k:a", "k:b", "k:c", "k:d", "other:e"]
    # One call for the waiting questions of each key, made as soon as the model was free.
    assert recorder.calls == [("k", ["a"]), ("k", ["b", "c", "d"]), ("other", ["e"])]
    assert after_release < AT_ONCE_S


def test_clients_answered_together_are_gathered_again_when_they_come_back():
    recorder = Recorder()

    async def body(batcher):
        together = [batcher.submit("k", item) for item in ("a", "b", "c")]  # three clients at once
        await asyncio.gather(*together)
        started = time.perf_counter()
        comeback = [batcher.submit("k", "d")]  # they come back a little apart
        await asyncio.sleep(0.05)
        comeback += [batcher.submit("k", item) for item in ("e", "f")]
        await asyncio.gather(*comeback)
        return time.perf_counter() - started

    elapsed = run(_with_batcher, recorder, body)
    # "d" waited for the company the last batch had (not alone), and no longer than until it came.
    assert [items for _, items in recorder.calls] == [["a", "b", "c"], ["d", "e", "f"]]
    assert elapsed < AT_ONCE_S


def test_expected_company_that_does_not_come_costs_at_most_the_window():
    recorder = Recorder()

    async def body(batcher):
        await asyncio.gather(*(batcher.submit("k", item) for item in ("a", "b")))
        started = time.perf_counter()
        await batcher.submit("k", "c")  # the other client went away: waits the window once
        waited = time.perf_counter() - started
        started = time.perf_counter()
        await batcher.submit("k", "d")  # now a lone client: at once
        return waited, time.perf_counter() - started

    waited, then = run(_with_batcher, recorder, body, 16, 0.3)
    assert 0.25 < waited < AT_ONCE_S and then < 0.25
    assert [items for _, items in recorder.calls] == [["a", "b"], ["c"], ["d"]]


def test_a_batch_never_exceeds_max_batch():
    recorder = Recorder(hold_first=True)

    async def body(batcher):
        first = batcher.submit("k", 0)
        assert await asyncio.to_thread(recorder.started.wait, 10)
        later = [batcher.submit("k", i) for i in range(1, 8)]
        recorder.release.set()
        return await asyncio.gather(first, *later)

    run(_with_batcher, recorder, body, 3, 0.05)  # the last one waits the window for company, then goes
    assert [items for _, items in recorder.calls] == [[0], [1, 2, 3], [4, 5, 6], [7]]


def test_a_withdrawn_question_leaves_the_queue_at_once_and_frees_its_slot():
    recorder = Recorder(hold_first=True)

    async def body(batcher):
        first = batcher.submit("k", "a")
        assert await asyncio.to_thread(recorder.started.wait, 10)
        quitter, stayer = batcher.submit("k", "quit"), batcher.submit("k", "stay")
        with pytest.raises(QueueFull):
            batcher.submit("k", "one too many")  # max_pending=2: both slots are taken
        quitter.cancel()
        await asyncio.sleep(0)  # the cancellation's callback runs
        assert batcher.pending == 1
        late = batcher.submit("k", "late")  # the quitter's slot is free again
        recorder.release.set()
        return await asyncio.gather(first, stayer, late)

    async def with_limit(recorder, body):
        batcher = Batcher(recorder, max_batch=16, window_s=0, max_pending=2)
        await batcher.start()
        try:
            return await asyncio.wait_for(body(batcher), 30)
        finally:
            await batcher.stop()

    assert run(with_limit, recorder, body) == ["k:a", "k:stay", "k:late"]
    assert [items for _, items in recorder.calls] == [["a"], ["stay", "late"]]  # "quit" never ran


def test_a_failing_item_fails_alone():
    def run_batch(key, items):
        if "bad" in items:
            raise ValueError("cannot encode")
        return [f"{key}:{item}" for item in items]

    async def body(batcher):
        futures = [batcher.submit("k", item) for item in ("a", "bad", "b")]
        return await asyncio.gather(*futures, return_exceptions=True)

    a, bad, b = run(_with_batcher, run_batch, body)
    assert (a, b) == ("k:a", "k:b") and isinstance(bad, ValueError)


def test_drain_answers_what_waits_and_refuses_what_comes():
    recorder = Recorder(hold_first=True)

    async def body(batcher):
        waiting = [batcher.submit("k", item) for item in ("a", "b", "c")]
        assert await asyncio.to_thread(recorder.started.wait, 10)
        batcher.drain(30)
        with pytest.raises(ShuttingDown):
            batcher.submit("k", "late")
        recorder.release.set()
        return await asyncio.gather(*waiting)

    assert run(_with_batcher, recorder, body, 1, 0) == ["k:a", "k:b", "k:c"]


def test_drain_timeout_drops_what_is_unanswered_with_shutting_down():
    recorder = Recorder(hold_first=True)

    async def body(batcher):
        waiting = [batcher.submit("k", item) for item in ("a", "b")]
        assert await asyncio.to_thread(recorder.started.wait, 10)  # "a" runs and never finishes in time
        batcher.drain(0.2)
        results = await asyncio.gather(*waiting, return_exceptions=True)
        recorder.release.set()
        return results

    results = run(_with_batcher, recorder, body, 1, 0)
    assert [type(r) for r in results] == [ShuttingDown, ShuttingDown]
    assert [items for _, items in recorder.calls] == [["a"]]  # "b" never reached the model
