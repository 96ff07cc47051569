"""Uncertainty of evaluation rows: each score's 95% interval, and paired differences between two evaluations.

Works on the per-question rows `evaluate_records` produces (and `predictions.jsonl` stores): each
row has `id`, `exact_match` and `f1` in [0, 1]. Scores are reported on SQuAD's 0-100 scale. Two
evaluations are compared on the questions both answered (matched by id), so a baseline, another
decoding or another run's test split pair up question by question; the statistics themselves are
`metrics/significance.py`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from loraqa.metrics.calibration import (
    brier_score,
    confidence_for_precision,
    coverage_curve,
    expected_calibration_error,
    fit_calibrator,
)
from loraqa.metrics.significance import interval, mcnemar_exact, paired_difference
from loraqa.metrics.slices import worst_slices
from loraqa.runs.files import QUESTION_ROWS_FILE


def score_intervals(rows: Sequence[dict]) -> dict:
    """`exact_match_ci` and `f1_ci`: the mean, 95% interval and n of each score over the rows (0-100)."""
    if not rows:
        return {}
    return {f"{key}_ci": interval([100.0 * row[key] for row in rows]).as_dict() for key in ("exact_match", "f1")}


def paired_comparison(rows_a: Sequence[dict], rows_b: Sequence[dict]) -> dict | None:
    """A minus B on their common questions: F1 and EM differences with intervals and p-values.

    F1: paired bootstrap interval and paired permutation p-value. EM: the same, plus the exact
    McNemar test (counts of questions only A / only B got right). None when no question is common.
    """
    by_id = {row["id"]: row for row in rows_b}
    pairs = [(row, by_id[row["id"]]) for row in rows_a if row["id"] in by_id]
    if not pairs:
        return None
    f1 = paired_difference([100.0 * a["f1"] for a, _ in pairs], [100.0 * b["f1"] for _, b in pairs])
    em = paired_difference([100.0 * a["exact_match"] for a, _ in pairs], [100.0 * b["exact_match"] for _, b in pairs])
    mcnemar = mcnemar_exact([a["exact_match"] >= 1.0 for a, _ in pairs], [b["exact_match"] >= 1.0 for _, b in pairs])
    return {
        "questions": len(pairs),
        "f1": f1.as_dict(),
        "exact_match": {**em.as_dict(), "mcnemar": mcnemar},
    }


def slice_changes(rows_a: Sequence[dict], rows_b: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """Per slice of A's rows (their `slices`): A minus B in F1 on that slice's common questions, with
    its paired interval: where an adapter gained or lost against its baseline."""
    by_id = {row["id"]: row for row in rows_b}
    members: dict[str, dict[str, list[tuple[dict, dict]]]] = {}
    for row in rows_a:
        other = by_id.get(row["id"])
        if other is None:
            continue
        for dimension, name in (row.get("slices") or {}).items():
            members.setdefault(dimension, {}).setdefault(name, []).append((row, other))
    changes: dict[str, dict[str, dict]] = {}
    for dimension, groups in members.items():
        for name, pairs in sorted(groups.items()):
            difference = paired_difference([100.0 * a["f1"] for a, _ in pairs], [100.0 * b["f1"] for _, b in pairs])
            changes.setdefault(dimension, {})[name] = difference.as_dict()
    return changes


def describe_weakest(slices: dict, changes: dict | None, count: int = 3) -> list[str]:
    """Lines naming the `count` slices with the lowest F1 (at least 5 questions), with the change from the baseline."""
    lines = []
    for dimension, name, scores in worst_slices(slices, count):
        ci = scores["f1_ci"]
        line = f"  {dimension} = {name}: F1 {scores['f1']:.1f} [{ci['low']:.1f}, {ci['high']:.1f}], n={scores['n']}"
        change = ((changes or {}).get(dimension) or {}).get(name)
        if change:
            line += f", {change['difference']:+.1f} vs no adapter"
        lines.append(line)
    return lines


def calibration_summary(validation_rows: Sequence[dict], test_rows: Sequence[dict]) -> dict:
    """Fit a confidence calibrator on the validation rows and measure it on the test rows.

    Returns the calibrator (`metrics/calibration.py`), ECE (15 bins, 0-1) and Brier before and after
    on both splits, the test coverage curve (F1/EM of the most confident X%, calibrated confidences)
    and the lowest calibrated confidence that keeps test precision (EM) at 0.9 and 0.8."""
    calibrator = fit_calibrator(
        [r["confidence"] for r in validation_rows], [r["exact_match"] >= 1 for r in validation_rows]
    )
    out: dict = {"calibrator": calibrator.as_dict(), "fitted_on": f"validation ({len(validation_rows)} questions)"}
    for split, rows in (("validation", validation_rows), ("test", test_rows)):
        raw = [r["confidence"] for r in rows]
        right = [r["exact_match"] >= 1 for r in rows]
        after = calibrator.apply(raw)
        out[split] = {
            "ece_before": round(expected_calibration_error(raw, right), 4),
            "ece_after": round(expected_calibration_error(after, right), 4),
            "brier_before": round(brier_score(raw, right), 4),
            "brier_after": round(brier_score(after, right), 4),
        }
    calibrated = calibrator.apply([r["confidence"] for r in test_rows])
    out["coverage"] = coverage_curve(calibrated, [r["f1"] for r in test_rows], [r["exact_match"] for r in test_rows])
    right = [r["exact_match"] >= 1 for r in test_rows]
    out["min_confidence_for_precision"] = {
        str(target): confidence_for_precision(calibrated, right, target) for target in (0.9, 0.8)
    }
    return out


def describe_comparison(label_a: str, label_b: str, comparison: dict | None) -> str:
    """One line: `A vs B: F1 +3.10 [1.20, 5.00] p=0.002; EM +2.40 (McNemar p=0.01) on 500 questions`,
    or the "not distinguishable" verdict when the F1 interval holds 0."""
    if comparison is None:
        return f"{label_a} vs {label_b}: no common questions to compare"
    f1, em = comparison["f1"], comparison["exact_match"]
    line = (
        f"{label_a} vs {label_b}: F1 {f1['difference']:+.2f} [{f1['low']:+.2f}, {f1['high']:+.2f}] "
        f"p={_p(f1['p_value'])}; EM {em['difference']:+.2f} (McNemar p={_p(em['mcnemar']['p_value'])})"
    )
    if not f1["distinguishable"]:
        return f"{line}: not distinguishable on these {comparison['questions']} questions"
    return f"{line} on {comparison['questions']} questions"


def read_question_rows(directory: str | Path) -> list[dict] | None:
    """The per-question rows an evaluation wrote into `directory`, or None where there are none."""
    path = Path(directory) / QUESTION_ROWS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return None
    if not all(isinstance(row, dict) and {"id", "f1", "exact_match"} <= row.keys() for row in rows):
        return None
    return rows


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"
