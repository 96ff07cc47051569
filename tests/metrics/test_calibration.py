"""Confidence calibration (metrics/calibration.py): ECE, Brier, the fitted map, coverage and thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from loraqa.inference.uncertainty import calibration_summary
from loraqa.metrics.calibration import (
    Calibrator,
    brier_score,
    confidence_for_precision,
    coverage_curve,
    expected_calibration_error,
    fit_calibrator,
)


def _overconfident(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A scorer whose answers are right with probability p but who claims sigmoid(3 logit p): far too sure."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.05, 0.95, n)
    claimed = 1 / (1 + np.exp(-3 * np.log(truth / (1 - truth))))
    return claimed, rng.random(n) < truth


def test_ece_and_brier_by_hand():
    assert expected_calibration_error([0.9, 0.9, 0.1, 0.1], [True, False, False, False]) == pytest.approx(
        0.5 * 0.4 + 0.5 * 0.1
    )
    assert brier_score([1.0, 0.0, 0.5], [True, False, True]) == pytest.approx(0.25 / 3)


@pytest.mark.parametrize("n", [150, 1000])  # temperature below ISOTONIC_MIN_ANSWERS; isotonic may win above
def test_a_deliberately_overconfident_scorer_is_corrected_on_unseen_answers(n):
    fit_conf, fit_right = _overconfident(1, n)
    test_conf, test_right = _overconfident(2, 2000)
    calibrator = fit_calibrator(fit_conf, fit_right)
    assert calibrator.method in ({"temperature"} if n < 200 else {"temperature", "isotonic"})
    assert expected_calibration_error(calibrator.apply(fit_conf), fit_right) <= expected_calibration_error(
        fit_conf, fit_right
    )
    before, after = (
        expected_calibration_error(test_conf, test_right),
        expected_calibration_error(calibrator.apply(test_conf), test_right),
    )
    assert before > 0.15 and after < before / 2
    assert brier_score(calibrator.apply(test_conf), test_right) < brier_score(test_conf, test_right)
    assert (
        Calibrator.from_dict(calibrator.as_dict()).apply([0.3, 0.9]).tolist() == calibrator.apply([0.3, 0.9]).tolist()
    )


def test_a_temperature_keeps_the_ranking_and_nothing_is_learned_from_one_outcome():
    calibrator = fit_calibrator(*_overconfident(3, 100))
    assert calibrator.method == "temperature" and calibrator.temperature > 1  # over-confident: softened
    assert np.all(np.diff(calibrator.apply([0.1, 0.5, 0.9, 0.99])) > 0)
    assert fit_calibrator([0.2, 0.9], [True, True]).method == "identity"


def test_coverage_and_the_confidence_that_keeps_a_precision():
    conf = [0.9, 0.8, 0.7, 0.6, 0.5]
    right = [True, True, False, True, False]
    curve = coverage_curve(conf, [1.0 if r else 0.0 for r in right], [1.0 if r else 0.0 for r in right], steps=5)
    assert [c["exact_match"] for c in curve] == [100.0, 100.0, 66.67, 75.0, 60.0]
    assert curve[1] == {"coverage": 0.4, "answered": 2, "min_confidence": 0.8, "f1": 100.0, "exact_match": 100.0}
    assert confidence_for_precision(conf, right, 0.75) == 0.6 and confidence_for_precision(conf, right, 1.0) == 0.8
    assert confidence_for_precision([0.5], [False], 0.9) is None


def test_the_summary_fits_on_validation_and_reports_test():
    val_conf, val_right = _overconfident(4, 300)
    test_conf, test_right = _overconfident(5, 300)
    rows = lambda c, r: [{"confidence": x, "exact_match": float(y), "f1": float(y)} for x, y in zip(c, r, strict=True)]  # noqa: E731
    summary = calibration_summary(rows(val_conf, val_right), rows(test_conf, test_right))
    assert summary["validation"]["ece_after"] <= summary["validation"]["ece_before"]
    assert summary["test"]["ece_after"] < summary["test"]["ece_before"]
    assert len(summary["coverage"]) == 10 and summary["fitted_on"] == "validation (300 questions)"
    # Fitting never sees the test split: the same validation rows with another test split fit the same map.
    other = calibration_summary(rows(val_conf, val_right), rows(*_overconfident(6, 50)))
    assert other["calibrator"] == summary["calibrator"]
