"""Token-by-token answers for `stream: true`: a transformers streamer fed by `generate()` in the worker thread.

A generative adapter's question asked with `stream: true` (greedy or sampling, no `min_confidence`:
beam search only knows its answer at the end, and an abstention only once the confidence is known)
gets its own model call with a `TokenStream` in its batching key. While that call runs, the model's
`generate` carries the stream as its `streamer` (`streaming_into`), so each new token's text reaches
the event loop as it is decoded. Text is released only when the final answer must begin with it:
the answer is the decoded tokens stripped and cut at the first newline (formulations/generation.py),
so leading and trailing whitespace, a newline and a half-decoded character are held back.

A client that disconnects cancels its stream; the next token `generate()` hands over raises
`StreamCancelled` inside `generate()`, which ends the model call at once (its result is discarded).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from transformers.generation.streamers import BaseStreamer


class StreamCancelled(Exception):
    """The client went away: stop generating."""


class TokenStream(BaseStreamer):
    """The text of one row's new tokens, as deltas on an asyncio queue. Hashes by identity: a batching key."""

    def __init__(self, tokenizer, loop: asyncio.AbstractEventLoop):
        self.tokenizer = tokenizer
        self.loop = loop
        self.deltas: asyncio.Queue[str] = asyncio.Queue()
        self.cancelled = False
        self.stopped_generation = False  # a cancel ended generate() early (tests and metrics read it)
        self._tokens: list[int] = []
        self._released = ""
        self._prompt_next = True  # generate()'s first put is the prompt (or decoder start); again after each end()

    def cancel(self) -> None:
        self.cancelled = True

    def put(self, value) -> None:  # in the worker thread, from generate()
        if self.cancelled:
            self.stopped_generation = True
            raise StreamCancelled("the client disconnected")
        if self._prompt_next:
            self._prompt_next = False
            return
        self._tokens.extend(int(t) for t in value.reshape(-1).tolist())
        self._release(self.tokenizer.decode(self._tokens, skip_special_tokens=True))

    def end(self) -> None:
        self._prompt_next = True  # a second generate() (the two-phase decode) starts with its prompt again

    def _release(self, text: str) -> None:
        safe = releasable(text)
        if len(safe) > len(self._released) and safe.startswith(self._released):
            delta, self._released = safe[len(self._released) :], safe
            self.loop.call_soon_threadsafe(self.deltas.put_nowait, delta)


def releasable(text: str) -> str:
    """The part of the decoded text the final answer surely starts with."""
    text = text.lstrip()
    if "\n" in text:
        text = text.split("\n", 1)[0]
    text = text.rstrip()
    return text[:-1] if text.endswith("\ufffd") else text  # a character whose bytes are not all decoded yet


@contextlib.contextmanager
def streaming_into(model, stream: TokenStream | None) -> Iterator[None]:
    """While inside, `model.generate(...)` streams into `stream` (the one worker thread runs one call at a time)."""
    if stream is None:
        yield
        return
    generate = model.generate

    def with_streamer(*args, **kwargs):
        return generate(*args, streamer=stream, **kwargs)

    model.generate = with_streamer  # an instance attribute over the class's method, removed below
    try:
        yield
    finally:
        del model.generate
