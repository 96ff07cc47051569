"""Slices of questions (metrics/slices.py): each question in one slice per dimension, scored with an interval."""

from __future__ import annotations

import pytest

from loraqa.metrics.slices import (
    answer_position,
    answer_type,
    context_quartiles,
    question_word,
    slice_metrics,
    worst_slices,
)


@pytest.mark.parametrize(
    "question, word",
    [
        ("How many points did they score?", "how many/much"),
        ("How much did it cost?", "how many/much"),
        ("Who won Super Bowl 50?", "who"),
        ("To whom was it given?", "who"),
        ("In which year?", "which"),
        ("The team that won was what?", "what"),
        ("Why did it fail?", "why"),
        ("Name the team.", "other"),
    ],
)
def test_question_word_is_the_first_wh_word_and_how_many_comes_first(question, word):
    assert question_word(question) == word


@pytest.mark.parametrize(
    "answers, kind",
    [
        ([], "unanswerable"),
        (["1998"], "date"),
        (["February 7, 2016"], "date"),
        (["the 19th century"], "date"),
        (["three"], "number"),
        (["$30 billion"], "number"),
        (["20 minutes"], "number"),
        (["Denver Broncos"], "short (1-3 words)"),
        (["the French"], "short (1-3 words)"),
        (["a phrase of five words"], "longer phrase"),
    ],
)
def test_answer_type_from_the_first_gold_answer(answers, kind):
    assert answer_type(answers) == kind


def test_context_quartiles_split_the_lengths_into_four_equal_groups_and_name_their_range():
    labels = context_quartiles([80, 10, 20, 30, 40, 50, 60, 70])
    assert labels == [
        "Q4 (61-80 chars)",
        "Q1 (10-20 chars)",
        "Q1 (10-20 chars)",
        "Q2 (21-40 chars)",
        "Q2 (21-40 chars)",
        "Q3 (41-60 chars)",
        "Q3 (41-60 chars)",
        "Q4 (61-80 chars)",
    ]
    assert answer_position(120, 100) == "later window" and answer_position(100, 100) == "first window"
    assert answer_position(None, 100) == "no answer" and answer_position(5, None) == "unknown"


def test_every_slice_scores_its_own_questions_and_the_worst_ones_are_named():
    rows = [
        {
            "id": str(i),
            "exact_match": float(i < 6),
            "f1": 1.0 if i < 6 else 0.25,
            "slices": {"question_word": "who" if i < 6 else "why"},
        }
        for i in range(12)
    ]
    slices = slice_metrics(rows)
    assert slices["question_word"]["who"]["n"] == 6 and slices["question_word"]["who"]["f1"] == 100.0
    assert slices["question_word"]["why"]["f1"] == 25.0 and slices["question_word"]["why"]["exact_match"] == 0.0
    assert slices["question_word"]["why"]["f1_ci"] == {"mean": 25.0, "low": 25.0, "high": 25.0, "n": 6}
    assert [(d, name) for d, name, _ in worst_slices(slices, 1)] == [("question_word", "why")]
    assert worst_slices(slices, min_n=7) == []
