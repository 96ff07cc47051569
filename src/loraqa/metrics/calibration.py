"""Confidence that means what it says: calibration error, and a map fitted on validation that fixes it.

An answer's confidence (extractive: the span's probability; generative: the length-normalised
sequence probability) is calibrated when, of the answers given confidence 0.8, about 80% are
right. "Right" here is exact match. Measured by:

* ECE (expected calibration error): answers in 15 equal-width confidence bins; the mean gap
  between each bin's accuracy and its mean confidence, weighted by the bin's share of answers.
* Brier score: the mean squared difference between confidence and correctness (0 or 1).

Two fixes, fitted on the **validation** split only (never the test split they are reported on):
* temperature scaling: confidence' = sigmoid(logit(confidence) / T), T by maximum likelihood
  (`scipy.optimize.minimize_scalar`). One number, so it cannot overfit; it keeps the ranking.
* isotonic regression: the best non-decreasing map from confidence to accuracy
  (`scipy.optimize.isotonic_regression`), more flexible, so it is chosen only with at least
  `ISOTONIC_MIN_ANSWERS` validation answers and a lower validation Brier score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import isotonic_regression, minimize_scalar

BINS = 15
ISOTONIC_MIN_ANSWERS = 200  # below this isotonic regression fits the validation split's noise
_EPS = 1e-6


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = BINS) -> float:
    """ECE over `bins` equal-width bins of [0, 1], on the 0-1 scale."""
    conf, right = _arrays(confidences, correct)
    if conf.size == 0:
        return 0.0
    index = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(right[members].mean() - conf[members].mean())
    return float(total)


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    conf, right = _arrays(confidences, correct)
    return float(np.mean((conf - right) ** 2)) if conf.size else 0.0


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from raw confidence to calibrated confidence; `identity` when nothing was fitted."""

    method: str  # "temperature", "isotonic" or "identity"
    temperature: float = 1.0
    knots_x: list[float] = field(default_factory=list)  # isotonic: raw confidences (sorted)
    knots_y: list[float] = field(default_factory=list)  # isotonic: the accuracy each maps to

    def apply(self, confidences: Sequence[float]) -> np.ndarray:
        conf = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
        if self.method == "temperature":
            logits = np.log(np.clip(conf, _EPS, 1 - _EPS)) - np.log(np.clip(1 - conf, _EPS, 1 - _EPS))
            return 1.0 / (1.0 + np.exp(-logits / self.temperature))
        if self.method == "isotonic":
            return np.interp(conf, self.knots_x, self.knots_y)
        return conf

    def as_dict(self) -> dict:
        out: dict = {"method": self.method}
        if self.method == "temperature":
            out["temperature"] = self.temperature
        if self.method == "isotonic":
            out.update(knots_x=self.knots_x, knots_y=self.knots_y)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        method = data.get("method")
        if method == "temperature":
            return cls("temperature", temperature=float(data["temperature"]))
        if method == "isotonic":
            return cls(
                "isotonic", knots_x=[float(x) for x in data["knots_x"]], knots_y=[float(y) for y in data["knots_y"]]
            )
        return cls("identity")


def fit_calibrator(confidences: Sequence[float], correct: Sequence[bool]) -> Calibrator:
    """Temperature scaling, or isotonic regression where there are enough answers and it fits better."""
    conf, right = _arrays(confidences, correct)
    if conf.size < 2 or right.min() == right.max():  # all right or all wrong: nothing to learn a map from
        return Calibrator("identity")
    logits = np.log(np.clip(conf, _EPS, 1 - _EPS)) - np.log(np.clip(1 - conf, _EPS, 1 - _EPS))

    def negative_log_likelihood(log_t: float) -> float:
        p = np.clip(1.0 / (1.0 + np.exp(-logits / np.exp(log_t))), _EPS, 1 - _EPS)
        return float(-np.mean(right * np.log(p) + (1 - right) * np.log(1 - p)))

    best = minimize_scalar(negative_log_likelihood, bounds=(np.log(0.02), np.log(50.0)), method="bounded")
    temperature = Calibrator("temperature", temperature=float(np.exp(best.x)))
    if conf.size < ISOTONIC_MIN_ANSWERS:
        return temperature
    order = np.argsort(conf, kind="stable")
    fitted = isotonic_regression(right[order], increasing=True).x
    isotonic = Calibrator("isotonic", knots_x=conf[order].tolist(), knots_y=fitted.tolist())
    if brier_score(isotonic.apply(conf), right) < brier_score(temperature.apply(conf), right):
        return isotonic
    return temperature


def coverage_curve(
    confidences: Sequence[float], f1s: Sequence[float], ems: Sequence[float], steps: int = 10
) -> list[dict]:
    """F1 and EM (0-100) when answering only the most confident X% of questions, X = 10, 20, ..., 100."""
    conf = np.asarray(confidences, dtype=float)
    order = np.argsort(-conf, kind="stable")
    f1, em = np.asarray(f1s, dtype=float)[order], np.asarray(ems, dtype=float)[order]
    curve = []
    for step in range(1, steps + 1):
        count = max(1, int(round(conf.size * step / steps)))
        curve.append(
            {
                "coverage": step / steps,
                "answered": count,
                "min_confidence": round(float(conf[order][count - 1]), 6),
                "f1": round(100 * float(f1[:count].mean()), 2),
                "exact_match": round(100 * float(em[:count].mean()), 2),
            }
        )
    return curve


def confidence_for_precision(confidences: Sequence[float], correct: Sequence[bool], target: float) -> float | None:
    """The lowest confidence P such that the answers at or above P are right (EM) at least `target` of the time."""
    conf, right = _arrays(confidences, correct)
    order = np.argsort(-conf, kind="stable")
    precision = np.cumsum(right[order]) / np.arange(1, conf.size + 1)
    meets = np.nonzero(precision >= target)[0]
    return float(conf[order][meets[-1]]) if meets.size else None


def _arrays(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    conf = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    right = np.asarray(correct, dtype=float)
    if conf.shape != right.shape:
        raise ValueError(f"{conf.size} confidences for {right.size} answers")
    return conf, right
