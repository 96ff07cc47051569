"""'Did you mean ...?': the closest known names to a misspelt one, for one-line errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(word: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to `n` names of `known` that look like `word`, closest first (case-insensitive)."""
    known = list(known)
    by_lower = {name.lower(): name for name in known}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    scores = [difflib.SequenceMatcher(None, word.lower(), name).ratio() for name in found]
    # A clear winner alone: 'learning_rate' for 'learning_rat', not also 'warmup_ratio'.
    return [by_lower[name] for name, score in zip(found, scores, strict=True) if score >= scores[0] - 0.1]


def did_you_mean(word: str, known: Iterable[str], n: int = 3) -> str:
    """'; did you mean 'x'?' (or 'x' or 'y'), or '' when nothing is close: appended to an error."""
    found = close_matches(word, known, n)
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(name) for name in found) + "?"
