"""ROUGE via rouge_score, against n-gram counts worked out by hand."""

import pytest

from loraqa.metrics import rouge_scores


def test_tiny_strings():
    # unigrams: 2 of 3 shared -> 2/3; bigrams (a b),(b c) vs (a b),(b d): 1 of 2 -> 1/2;
    # LCS "a b" has length 2 -> 2/3
    scores = rouge_scores(["a b c"], [["a b d"]])
    assert scores["rouge1"] == pytest.approx(200 / 3)
    assert scores["rouge2"] == pytest.approx(50.0)
    assert scores["rougeL"] == pytest.approx(200 / 3)


def test_lcs_differs_from_unigram_overlap():
    # same unigrams, reversed order: rouge1 1, no shared bigram, LCS length 1 of 2
    scores = rouge_scores(["b a"], [["a b"]])
    assert scores == pytest.approx({"rouge1": 100.0, "rouge2": 0.0, "rougeL": 50.0})


def test_best_reference_is_used_and_predictions_are_averaged():
    # first prediction matches its second reference exactly; second shares nothing
    scores = rouge_scores(["denver broncos", "panthers"], [["carolina", "Denver Broncos"], ["x"]])
    assert scores == pytest.approx({"rouge1": 50.0, "rouge2": 50.0, "rougeL": 50.0})


def test_empty_inputs_give_zeros():
    assert rouge_scores([], []) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_no_answer_question_scores_like_exact_match():
    # SQuAD v2: an empty prediction of a no-answer question is right (EM 1), any answer is wrong.
    assert rouge_scores([""], [[]]) == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    assert rouge_scores(["  "], [[""]]) == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    assert rouge_scores(["Denver"], [[]]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    # mixed with an answerable question, each counts once in the mean
    assert rouge_scores(["", "a b"], [[], ["a b"]])["rouge1"] == pytest.approx(100.0)
    assert rouge_scores(["x", "a b"], [[], ["a b"]])["rouge1"] == pytest.approx(50.0)


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="pair up"):
        rouge_scores(["a"], [])


def test_bare_string_reference_raises():
    with pytest.raises(TypeError, match="not a str"):
        rouge_scores(["a"], ["a"])
