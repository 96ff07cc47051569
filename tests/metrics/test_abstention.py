"""The SQuAD v2 no-answer threshold: the arg-max of F1 over the rows it is given, computed by hand."""

from __future__ import annotations

import pytest

from loraqa.metrics.abstention import best_threshold, decide
from loraqa.metrics.squad import f1


def row(diff: float, best: str, gold: list[str]) -> dict:
    return {"null_score_diff": diff, "best_answer": best, "gold_answers": gold}


def mean_f1(rows: list[dict], threshold: float) -> float:
    return (
        100.0
        * sum(f1(decide(r["null_score_diff"], r["best_answer"], threshold), r["gold_answers"]) for r in rows)
        / len(rows)
    )


def test_the_threshold_answers_exactly_the_questions_the_model_should_answer():
    rows = [row(-2.0, "Ada", ["Ada"]), row(-1.0, "Brun", []), row(0.5, "1800", ["1800"]), row(3.0, "x", [])]
    choice = best_threshold(rows)
    # Answering diff <= 0.5 gets rows 0 and 2 right but answers row 1 (wrong): 75; at -2.0: rows 0, 1, 3 right,
    # row 2 abstains: 75 too; the tie goes to the lower threshold.
    assert choice.threshold == -2.0 and choice.f1 == pytest.approx(75.0)
    assert choice.f1 == pytest.approx(max(mean_f1(rows, t) for t in [-3.0, -2.0, -1.0, 0.5, 3.0]))


def test_the_choice_is_the_argmax_over_every_threshold_that_changes_a_decision():
    import random

    rng = random.Random(0)
    rows = [
        row(rng.uniform(-5, 5), rng.choice(["Ada", "Brun", "the town"]), rng.choice([[], ["Ada"], ["the town"]]))
        for _ in range(200)
    ]
    choice = best_threshold(rows)
    candidates = sorted({r["null_score_diff"] for r in rows}) + [min(r["null_score_diff"] for r in rows) - 1]
    scores = {t: mean_f1(rows, t) for t in candidates}
    best = max(scores.values())
    assert choice.f1 == pytest.approx(best) and mean_f1(rows, choice.threshold) == pytest.approx(best)
    assert choice.threshold == min(t for t, s in scores.items() if s == pytest.approx(best))
    assert [p["threshold"] for p in choice.curve] == sorted(p["threshold"] for p in choice.curve)
    assert max(p["f1"] for p in choice.curve) == pytest.approx(best)


def test_all_unanswerable_abstains_everywhere_and_all_answerable_answers_everywhere():
    nothing = [row(d, "Ada", []) for d in (-1.0, 0.0, 1.0)]
    assert mean_f1(nothing, best_threshold(nothing).threshold) == 100.0
    everything = [row(d, "Ada", ["Ada"]) for d in (-1.0, 0.0, 1.0)]
    assert best_threshold(everything).threshold == 1.0
