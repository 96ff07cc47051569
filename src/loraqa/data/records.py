"""The one in-memory shape every data source is turned into."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    text: str
    answer_start: int  # character offset into the context; -1 when the source gives none


@dataclass(frozen=True)
class QARecord:
    """One question about one context, as in SQuAD.

    `answers` is empty exactly when the question is unanswerable (SQuAD v2 `is_impossible`).
    """

    id: str
    context: str
    question: str
    answers: tuple[Answer, ...] = field(default_factory=tuple)
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers

    @property
    def answer_texts(self) -> list[str]:
        return [a.text for a in self.answers]
