"""How sure a score is, and whether two scores differ: intervals and paired tests over questions.

Every per-question score (EM is 0 or 100, F1 in 0-100) is one draw of what the model would score on
questions like these. The statistics are scipy's own, never hand-rolled:

* `interval`: a 95% bootstrap confidence interval of the mean over questions
  (`scipy.stats.bootstrap`, percentile method, seeded so a rerun prints the same numbers).
* `paired_difference`: A minus B on the SAME questions. The interval is a paired bootstrap of the
  mean difference; the p-value is a paired permutation test (each question's two scores may swap,
  `scipy.stats.permutation_test` with `permutation_type="samples"`). Pairing matters: two models'
  scores on one question are correlated (hard questions are hard for both), so an unpaired test
  would call real differences noise.
* `mcnemar_exact`: for exact match, the exact McNemar test: only the questions that one model gets
  right and the other wrong count, and under "no difference" each is a fair coin
  (`scipy.stats.binomtest`).

A difference whose interval holds 0 is "not distinguishable on these N questions": the data cannot
tell which is better, whatever the point estimates say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SEED = 0  # fixed: the same questions and scores always give the same interval
BOOTSTRAP_RESAMPLES = 2000
PERMUTATION_RESAMPLES = 5000


@dataclass(frozen=True)
class Interval:
    """The mean of per-question scores with its 95% confidence interval, on the scores' own scale."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class PairedDifference:
    """Mean of A minus B over the questions both answered, its interval and a two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    n: int

    @property
    def distinguishable(self) -> bool:
        """False when the interval holds 0: these questions cannot tell A and B apart."""
        return not (self.low <= 0.0 <= self.high)

    @property
    def verdict(self) -> str:
        if self.distinguishable:
            return "A better" if self.difference > 0 else "B better"
        return f"not distinguishable on these {self.n} questions"

    def as_dict(self) -> dict:
        values = {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}
        return {**values, "distinguishable": self.distinguishable, "verdict": self.verdict}


def interval(scores: Sequence[float], *, seed: int = SEED) -> Interval:
    """The 95% bootstrap interval of the mean of `scores` (one per question)."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        raise ValueError("no scores: an interval needs at least one question")
    mean = float(values.mean())
    if np.all(values == values[0]):  # every resample has this mean: the interval is the point itself
        return Interval(mean, mean, mean, int(values.size))
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), int(values.size))


def paired_difference(a: Sequence[float], b: Sequence[float], *, seed: int = SEED) -> PairedDifference:
    """A minus B, question by question (a[i] and b[i] score the same question)."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape:
        raise ValueError(f"paired scores need the same questions: {first.size} against {second.size}")
    if first.size == 0:
        raise ValueError("no scores: a paired difference needs at least one question")
    differences = first - second
    mean = float(differences.mean())
    if np.all(differences == differences[0]):  # identical answers, or a constant shift: nothing to resample
        return PairedDifference(mean, mean, mean, 1.0 if mean == 0 else 0.0, int(first.size))
    bootstrap = stats.bootstrap(
        (first, second),
        _mean_difference,
        paired=True,
        vectorized=True,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    permutation = stats.permutation_test(
        (first, second),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=PERMUTATION_RESAMPLES,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    ci = bootstrap.confidence_interval
    return PairedDifference(mean, float(ci.low), float(ci.high), float(permutation.pvalue), int(first.size))


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict:
    """Exact McNemar test on exact match: counts of questions only A / only B got right, and the p-value."""
    first, second = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if first.shape != second.shape:
        raise ValueError(f"paired answers need the same questions: {first.size} against {second.size}")
    only_a = int(np.sum(first & ~second))
    only_b = int(np.sum(~first & second))
    discordant = only_a + only_b
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p_value}


def _mean_difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)
