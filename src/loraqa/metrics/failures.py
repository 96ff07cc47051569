"""Sort a wrong answer into one failure category, for error analysis in reports.

All comparisons use SQuAD normalisation (`normalize_answer`) and the same gold set as the official
score (golds that normalize to "" are dropped; none left means unanswerable).
"""

from __future__ import annotations

from collections.abc import Sequence

from loraqa.metrics.squad import answer_tokens, exact_match, f1, normalize_answer, scorable_golds

FAILURE_CATEGORIES = (
    "answered_unanswerable",
    "empty",
    "echoes_question",
    "longer_than_gold",
    "partial",
    "wrong_span",
)

# A prediction counts as echoing when at least this share of its tokens come from the question.
ECHO_THRESHOLD = 0.6


def failure_category(prediction: str, gold_answers: Sequence[str], question: str) -> str | None:
    """None if the prediction is an exact match, else the first category that applies:

    1. "answered_unanswerable": the question has no gold answer, the prediction is not empty.
    2. "empty": the prediction normalizes to "" although a gold answer exists.
    3. "echoes_question": >= 60% of the prediction's tokens (with repeats) occur in the question,
       and it shares no token with any gold answer.
    4. "longer_than_gold": a normalized gold answer occurs inside the normalized prediction, on
       token boundaries (so gold "1" is not found in "10"); not EM, so the prediction is longer.
    5. "partial": F1 > 0.
    6. "wrong_span": F1 == 0.
    """
    golds = scorable_golds(gold_answers)
    if exact_match(prediction, golds):
        return None
    pred_norm = normalize_answer(prediction)
    if golds == [""]:
        return "answered_unanswerable"
    if not pred_norm:
        return "empty"

    pred_toks = pred_norm.split()
    question_toks = set(answer_tokens(question))
    gold_toks = {t for g in golds for t in answer_tokens(g)}
    from_question = sum(t in question_toks for t in pred_toks) / len(pred_toks)
    if from_question >= ECHO_THRESHOLD and not gold_toks.intersection(pred_toks):
        return "echoes_question"

    # Padding with spaces makes the substring test respect token boundaries.
    if any(f" {normalize_answer(g)} " in f" {pred_norm} " for g in golds):
        return "longer_than_gold"
    return "partial" if f1(prediction, golds) > 0 else "wrong_span"
