"""SQuAD exact match and F1, as defined by the official `evaluate-v2.0.py`.

The definitions below reproduce that script line for line in meaning, so numbers reported by loraqa
can be compared with published SQuAD results:

* `normalize_answer`: lowercase, drop ASCII punctuation (`string.punctuation`), drop the articles
  a/an/the as whole words, collapse whitespace, in that order.
* Gold answers that normalize to nothing are dropped; if none remain (an unanswerable v2 question,
  or an empty gold list), the only gold answer is "" and only an empty prediction scores.
* Per question, exact match and F1 are the maximum over the gold answers.
* `squad_scores` averages over questions on the 0-100 scale, and splits v2 data into HasAns/NoAns.

Not reproduced: the script's no-answer probability thresholds (`--na-prob-file`), which need
model confidences rather than answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lowercase, remove punctuation, remove articles (a/an/the), collapse whitespace.

    The order matters and is the official one: punctuation goes before articles, so "a.n" becomes
    "an" and is then removed as an article.
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def answer_tokens(s: str) -> list[str]:
    """The tokens F1 counts: the whitespace-separated words of `normalize_answer(s)`."""
    return normalize_answer(s).split()


def scorable_golds(gold_answers: Sequence[str]) -> list[str]:
    """The gold answers the official script scores against.

    Golds that normalize to "" are dropped; if none remain the question is treated as unanswerable
    and the only gold is "".
    """
    # A bare str is a Sequence[str] too; scoring against its characters would be silently wrong.
    if isinstance(gold_answers, str):
        raise TypeError(f"gold_answers must be a sequence of strings, not a str: {gold_answers!r}")
    golds = [g for g in gold_answers if normalize_answer(g)]
    return golds or [""]


def _exact_match_one(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1_one(prediction: str, gold: str) -> float:
    pred_toks = answer_tokens(prediction)
    gold_toks = answer_tokens(gold)
    if not pred_toks or not gold_toks:
        # v2 rule: a no-answer is right only against a no-answer.
        return float(pred_toks == gold_toks)
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 if `normalize_answer(prediction)` equals that of some gold answer, else 0.0.

    An empty `gold_answers` (unanswerable question) means the only gold is "": the prediction must
    normalize to "".
    """
    return max(_exact_match_one(prediction, g) for g in scorable_golds(gold_answers))


def f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """Token-level F1 in [0, 1], maximised over gold answers.

    With p = common / len(pred_tokens), r = common / len(gold_tokens) (common counts tokens with
    multiplicity, on `answer_tokens`), F1 = 2pr / (p + r), and 0 when nothing is shared.
    If the prediction or the gold has no tokens, F1 is 1.0 when both are empty and 0.0 otherwise.
    """
    return max(_f1_one(prediction, g) for g in scorable_golds(gold_answers))


def _mean_percent(values: list[float]) -> float:
    # 0.0 rather than NaN for an empty group, so reports never carry NaN into JSON.
    return 100.0 * sum(values) / len(values) if values else 0.0


def squad_scores(predictions: Mapping[str, str], gold: Mapping[str, Sequence[str]]) -> dict:
    """Corpus-level SQuAD scores, on the 0-100 scale like the official script.

    Returns `exact_match`, `f1` (means over every id in `gold`), `count` (len(gold)) and `missing`
    (gold ids with no prediction; each is scored as the empty answer "", which is right for an
    unanswerable question and wrong otherwise). When any gold list is empty (v2 data) it also
    returns `HasAns_exact_match`, `HasAns_f1`, `HasAns_total`, `NoAns_exact_match`, `NoAns_f1`,
    `NoAns_total`; a group with no questions scores 0.0.

    HasAns/NoAns follow the official split on the raw gold list (`bool(answers)`), so a gold list
    like ["the"] counts as HasAns although it is scored as unanswerable, exactly as the script does.

    Raises ValueError if a prediction's id is not in `gold` (usually predictions of another split).
    """
    unknown = [qid for qid in predictions if qid not in gold]
    if unknown:
        shown = ", ".join(repr(q) for q in unknown[:5])
        raise ValueError(f"{len(unknown)} prediction id(s) not in the gold answers, e.g. {shown}")

    # One row per question, in gold order, so sums match the official script to the last bit.
    rows: list[tuple[bool, float, float]] = []
    missing = 0
    for qid, answers in gold.items():
        if qid not in predictions:
            missing += 1
        prediction = predictions.get(qid, "")
        rows.append((bool(answers), exact_match(prediction, answers), f1(prediction, answers)))

    scores: dict = {
        "exact_match": _mean_percent([em for _, em, _ in rows]),
        "f1": _mean_percent([f for _, _, f in rows]),
        "count": len(gold),
        "missing": missing,
    }
    if any(not has_answer for has_answer, _, _ in rows):
        for name, group in (("HasAns", True), ("NoAns", False)):
            in_group = [(em, f) for has_answer, em, f in rows if has_answer is group]
            scores[f"{name}_exact_match"] = _mean_percent([em for em, _ in in_group])
            scores[f"{name}_f1"] = _mean_percent([f for _, f in in_group])
            scores[f"{name}_total"] = len(in_group)
    return scores
