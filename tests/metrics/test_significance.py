"""Intervals and paired tests over per-question scores (metrics/significance.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loraqa.metrics.significance import interval, mcnemar_exact, paired_difference


def _f1_like(seed: int, n: int = 500, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.choice([0.0, 100.0, 50.0, 66.7], size=n, p=[0.4, 0.4, 0.1, 0.1]) + shift, 0, 100)


def test_the_interval_holds_the_mean_is_seeded_and_as_wide_as_the_standard_error_says():
    scores = _f1_like(1)
    result = interval(scores)
    assert result.low < result.mean < result.high and result.n == 500
    assert interval(scores) == result  # a rerun prints the same numbers
    # The bootstrap's 95% half-width is close to 1.96 standard errors for a mean of 500 draws.
    half_width = 1.96 * scores.std(ddof=1) / math.sqrt(scores.size)
    assert (result.high - result.low) / 2 == pytest.approx(half_width, rel=0.15)


def test_identical_answers_differ_by_exactly_zero_with_a_zero_width_interval():
    scores = _f1_like(2)
    same = paired_difference(scores, scores.copy())
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    assert same.p_value == 1.0 and not same.distinguishable
    assert same.verdict == "not distinguishable on these 500 questions"
    assert mcnemar_exact(scores == 100, scores == 100) == {"only_a_right": 0, "only_b_right": 0, "p_value": 1.0}


def test_a_known_large_difference_is_distinguishable_with_a_tiny_p_value():
    weak = _f1_like(3)
    strong = np.where(np.random.default_rng(4).random(500) < 0.3, 100.0, weak)  # fixes 30% of the questions
    result = paired_difference(strong, weak)
    assert result.difference > 10 and result.low > 0 and result.p_value < 0.001
    assert result.distinguishable and result.verdict == "A better"


def test_pairing_sees_a_small_consistent_gain_that_the_unpaired_intervals_cannot():
    base = _f1_like(5)
    better = base.copy()
    better[:15] = np.where(better[:15] < 100, 100.0, better[:15])  # 15 questions fixed, none broken
    first, second = interval(better), interval(base)
    assert first.low < second.high  # the two separate intervals overlap...
    assert paired_difference(better, base).low > 0  # ...but on the same questions the gain is real


def test_exact_mcnemar_counts_only_discordant_questions():
    a = [True] * 10 + [False] * 5 + [True] * 5
    b = [False] * 10 + [False] * 5 + [True] * 5
    assert mcnemar_exact(a, b) == {"only_a_right": 10, "only_b_right": 0, "p_value": pytest.approx(2 * 0.5**10)}


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="same questions"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        interval([])
