"""Evaluation rows with their uncertainty: intervals per score, paired comparisons matched by question id."""

from __future__ import annotations

import json

from loraqa.inference.uncertainty import describe_comparison, paired_comparison, read_question_rows, score_intervals


def _rows(scores: list[float], prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "exact_match": float(s == 1.0), "f1": s} for i, s in enumerate(scores)]


def test_intervals_are_on_the_0_100_scale_and_count_the_questions():
    result = score_intervals(_rows([1.0, 0.0, 0.5, 1.0]))
    assert result["f1_ci"]["mean"] == 62.5 and result["f1_ci"]["n"] == 4
    assert 0 <= result["f1_ci"]["low"] <= 62.5 <= result["f1_ci"]["high"] <= 100
    assert result["exact_match_ci"]["mean"] == 50.0


def test_pairs_are_matched_by_question_id_whatever_the_order_and_extra_questions():
    a = _rows([1.0, 0.0, 1.0, 0.5])
    b = list(reversed(_rows([1.0, 0.0, 1.0, 0.5]))) + [{"id": "extra", "exact_match": 1.0, "f1": 1.0}]
    same = paired_comparison(a, b)
    assert same["questions"] == 4 and same["f1"]["difference"] == 0.0 and same["f1"]["low"] == same["f1"]["high"] == 0
    assert "not distinguishable on these 4 questions" in describe_comparison("a", "b", same)
    assert paired_comparison(a, _rows([1.0], prefix="other")) is None


def test_a_large_gain_is_reported_as_one():
    good, bad = _rows([1.0] * 80 + [0.0] * 20), _rows([0.0] * 80 + [0.0] * 20)
    result = paired_comparison(good, bad)
    assert result["f1"]["difference"] == 80.0 and result["f1"]["p_value"] < 0.001
    assert result["exact_match"]["mcnemar"] == {"only_a_right": 80, "only_b_right": 0, "p_value": 2 * 0.5**80}
    line = describe_comparison("adapter", "baseline", result)
    assert line.startswith("adapter vs baseline: F1 +80.00") and "p=<0.001" in line and "on 100 questions" in line


def test_rows_are_read_back_from_an_evaluation_directory(tmp_path):
    rows = _rows([1.0, 0.25])
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_question_rows(tmp_path) == rows
    assert read_question_rows(tmp_path / "missing") is None
    (tmp_path / "predictions.jsonl").write_text('{"id": "x"}\n')  # not an evaluation's rows
    assert read_question_rows(tmp_path) is None
