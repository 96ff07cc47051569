"""SQuAD v2 abstention: choose the no-answer threshold that maximises F1 on the validation split.

Every formulation gives each question a `null_score_diff`, how much the model prefers "no answer"
to its best answer (extractive: the [CLS] logit sum minus the best span's; generative: the log
probability of the no-answer text minus its best answer's), and that best answer. At threshold t a
question is answered "" when its difference is above t, and with its best answer otherwise, as the
official SQuAD v2 script's `na_prob_thresh` decides.

`best_threshold` tries every threshold that changes a decision: each question's own difference
(answering it and every question below it) and one below them all (answering none). Only the rows
it is given are read, so a threshold chosen on validation rows cannot depend on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loraqa.metrics.squad import exact_match, f1

CURVE_POINTS = 200  # enough for the report's plot; the full curve has a point per question


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    f1: float  # 0-100, on the rows it was chosen on, at `threshold`
    exact_match: float
    curve: list[dict]  # {"threshold", "f1", "HasAns_f1", "NoAns_f1"}, ascending threshold, at most CURVE_POINTS


def decide(null_score_diff: float, best_answer: str, threshold: float) -> str:
    """The answer at `threshold`: "" (no answer) when the model prefers it by more than the threshold."""
    return "" if null_score_diff > threshold else best_answer


def best_threshold(rows: Sequence[dict]) -> ThresholdChoice:
    """The threshold with the highest mean F1 over `rows` (each with `null_score_diff`, `best_answer`,
    `gold_answers`); ties go to the lowest such threshold. Exact match breaks no ties: F1 is what is
    maximised, as the official script's `best_f1_thresh`."""
    if not rows:
        return ThresholdChoice(0.0, 0.0, 0.0, [])
    ordered = sorted(rows, key=lambda row: row["null_score_diff"])
    answered = [
        (f1(r["best_answer"], r["gold_answers"]), exact_match(r["best_answer"], r["gold_answers"])) for r in ordered
    ]
    abstained = [(f1("", r["gold_answers"]), exact_match("", r["gold_answers"])) for r in ordered]
    has_answer = [bool(r["gold_answers"]) for r in ordered]
    n, n_has = len(ordered), sum(has_answer)
    # Start with every question abstaining, then answer them one by one in ascending difference.
    f1_sum, em_sum = sum(f for f, _ in abstained), sum(e for _, e in abstained)
    has_sum, no_sum = (
        sum(f for (f, _), h in zip(abstained, has_answer, strict=True) if h),
        sum(f for (f, _), h in zip(abstained, has_answer, strict=True) if not h),
    )
    candidates = [(ordered[0]["null_score_diff"] - 1.0, f1_sum, em_sum, has_sum, no_sum)]
    for i, row in enumerate(ordered):
        delta_f1 = answered[i][0] - abstained[i][0]
        f1_sum += delta_f1
        em_sum += answered[i][1] - abstained[i][1]
        if has_answer[i]:
            has_sum += delta_f1
        else:
            no_sum += delta_f1
        if i + 1 < n and ordered[i + 1]["null_score_diff"] == row["null_score_diff"]:
            continue  # equal differences are decided together
        candidates.append((float(row["null_score_diff"]), f1_sum, em_sum, has_sum, no_sum))
    best = max(candidates, key=lambda c: (c[1], -c[0]))
    curve = [
        {
            "threshold": round(t, 4),
            "f1": 100.0 * f / n,
            "HasAns_f1": 100.0 * h / n_has if n_has else 0.0,
            "NoAns_f1": 100.0 * z / (n - n_has) if n > n_has else 0.0,
        }
        for t, f, _, h, z in _thinned(candidates)
    ]
    return ThresholdChoice(best[0], 100.0 * best[1] / n, 100.0 * best[2] / n, curve)


def _thinned(candidates: list[tuple]) -> list[tuple]:
    if len(candidates) <= CURVE_POINTS:
        return candidates
    step = (len(candidates) - 1) / (CURVE_POINTS - 1)
    return [candidates[round(k * step)] for k in range(CURVE_POINTS)]
