"""Where a model fails: each question put in slices, and EM/F1 with an interval per slice.

Dimensions (each question is in exactly one slice of each):
* `question_word`: how many/much, who, what, when, where, why, how, which (the first one in the
  question, "whom"/"whose" counted as who), else other.
* `answer_type` of the first gold answer: unanswerable, number, date, short (1-3 words), longer
  phrase (4 words and more). Numbers and dates are recognised by their text alone.
* `context_length`: the quartile of the context's length in characters among the evaluated questions.
* `answer_position`: whether the gold answer ends inside the first window the model reads
  (`window_chars`, given by the caller from the tokenizer) or later; "no answer" when unanswerable.
* `answerable`: yes or no (v2 data only; v1 questions are all answerable).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from loraqa.metrics.significance import interval

DIMENSIONS = ("question_word", "answer_type", "context_length", "answer_position", "answerable")
_WORDS = {
    "who": "who",
    "whom": "who",
    "whose": "who",
    "what": "what",
    "when": "when",
    "where": "where",
    "why": "why",
    "how": "how",
    "which": "which",
}
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b")
_HOW_MANY = re.compile(r"\bhow (many|much)\b")
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DATE = re.compile(rf"\b({_MONTHS})\b|\b(1[0-9]{{3}}|20[0-9]{{2}})s?\b|\b\d{{1,2}}(st|nd|rd|th)? century\b")
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fifteen twenty "
    "thirty forty fifty sixty seventy eighty ninety hundred thousand million billion half "
    "dozen several".split()
)


def question_word(question: str) -> str:
    text = question.lower()
    if _HOW_MANY.search(text):
        return "how many/much"
    match = _WORD.search(text)
    return _WORDS[match.group(1)] if match else "other"


def answer_type(answers: Sequence[str]) -> str:
    if not answers:
        return "unanswerable"
    text = answers[0].strip().lower()
    words = text.split()
    if _DATE.search(text):  # before numbers: "1998" is a year
        return "date"
    first = words[0].strip("$€£~≈(") if words else ""
    if len(words) <= 3 and (first[:1].isdigit() or first in _NUMBER_WORDS):  # "3", "$30 billion", "20 minutes"
        return "number"
    return "short (1-3 words)" if len(words) <= 3 else "longer phrase"


def answer_position(answer_end: int | None, window_chars: int | None) -> str:
    if answer_end is None:
        return "no answer"
    if window_chars is None:
        return "unknown"
    return "first window" if answer_end <= window_chars else "later window"


def context_quartiles(lengths: Sequence[int]) -> list[str]:
    """Each length's quartile label (Q1 shortest .. Q4 longest) among `lengths`, with its character range."""
    ordered = sorted(lengths)
    n = len(ordered)
    if n == 0:
        return []
    cuts = [ordered[max(0, (n * q) // 4 - 1)] for q in (1, 2, 3)]  # the last length of each quarter
    bounds = [ordered[0], *cuts, ordered[-1]]

    def label(length: int) -> str:
        quartile = sum(length > cut for cut in cuts)
        low = bounds[quartile] if quartile == 0 else bounds[quartile] + 1
        return f"Q{quartile + 1} ({low:,}-{bounds[quartile + 1]:,} chars)"

    return [label(length) for length in lengths]


def slice_metrics(rows: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """Per dimension and slice: n, exact_match and f1 (0-100) and f1's 95% interval.

    `rows` are evaluation rows carrying `slices` ({dimension: slice}), `exact_match` and `f1` in [0, 1]."""
    table: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        for dimension, name in (row.get("slices") or {}).items():
            table.setdefault(dimension, {}).setdefault(name, []).append(row)
    return {
        dimension: {name: _scores(members) for name, members in sorted(groups.items())}
        for dimension, groups in table.items()
    }


def _scores(rows: list[dict]) -> dict:
    f1s = [100.0 * r["f1"] for r in rows]
    return {
        "n": len(rows),
        "exact_match": round(100.0 * sum(r["exact_match"] for r in rows) / len(rows), 2),
        "f1": round(sum(f1s) / len(f1s), 2),
        "f1_ci": interval(f1s).as_dict(),
    }


def worst_slices(slices: dict[str, dict[str, dict]], count: int = 3, min_n: int = 5) -> list[tuple[str, str, dict]]:
    """The `count` slices with the lowest F1 among those with at least `min_n` questions."""
    candidates = [(d, name, s) for d, group in slices.items() for name, s in group.items() if s["n"] >= min_n]
    return sorted(candidates, key=lambda c: c[2]["f1"])[:count]
