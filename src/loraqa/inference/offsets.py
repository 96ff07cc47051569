"""Where an answer sits in its context, as character offsets (`inference.answer.Answer.start`/`end`)."""

from __future__ import annotations


def answer_offsets(context: str, text: str) -> tuple[int | None, int | None]:
    """(start, end) of the first occurrence of `text` in `context`, end exclusive; (None, None) when
    the answer is empty or not a span of the context (a generative model may paraphrase)."""
    start = context.find(text) if text else -1
    return (start, start + len(text)) if start >= 0 else (None, None)
