"""SQuAD EM/F1 against values worked out by hand from the official evaluate-v2.0.py definitions."""

import pytest

from loraqa.metrics import exact_match, f1, normalize_answer, squad_scores


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Denver Broncos", "denver broncos"),
        ("  Hello\tWorld\n", "hello world"),
        ("Denver, Colorado!", "denver colorado"),
        ("Anne's theater", "annes theater"),  # "theater" is not the article "the"
        ("An apple a day", "apple day"),
        ("a.n apple", "apple"),  # punctuation goes first, so "a.n" becomes the article "an"
        ("the", ""),
        ("", ""),
        ("Café  Été", "café été"),  # non-ASCII letters are kept
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_articles_and_case_do_not_break_exact_match():
    assert exact_match("the Denver Broncos", ["Denver Broncos"]) == 1.0
    assert exact_match("DENVER BRONCOS.", ["Denver Broncos"]) == 1.0
    assert exact_match("Broncos", ["Denver Broncos"]) == 0.0


def test_f1_subset_of_gold():
    # 1 shared token; precision 1/1, recall 1/2 -> 2 * 1 * 0.5 / 1.5
    assert f1("Broncos", ["Denver Broncos"]) == pytest.approx(2 / 3)


def test_f1_counts_repeated_tokens_once_per_match():
    # pred {cat:2, dog:1}, gold {cat:1, dog:2}: common = 1 + 1 = 2; p = r = 2/3
    assert f1("cat cat dog", ["cat dog dog"]) == pytest.approx(2 / 3)


def test_f1_no_overlap_is_zero():
    assert f1("Carolina Panthers", ["Denver Broncos"]) == 0.0


def test_max_over_gold_answers():
    golds = ["Broncos", "Denver Broncos"]
    # vs "Broncos": p 1/3, r 1 -> 0.5; vs "Denver Broncos": p 2/3, r 1 -> 0.8
    assert f1("Denver Broncos team", golds) == pytest.approx(0.8)
    assert exact_match("Denver Broncos team", golds) == 0.0
    assert exact_match("broncos", golds) == 1.0


@pytest.mark.parametrize(
    ("prediction", "golds", "em", "f1_value"),
    [
        ("", [], 1.0, 1.0),  # unanswerable, abstained
        ("the", [], 1.0, 1.0),  # normalizes to "", so it is an abstention
        ("?!", [], 1.0, 1.0),
        ("Denver", [], 0.0, 0.0),  # unanswerable, answered anyway
        ("", ["Denver"], 0.0, 0.0),  # answerable, abstained
        ("", ["the", "Denver"], 0.0, 0.0),  # "the" normalizes to "" and is dropped
        ("", [".", "a"], 1.0, 1.0),  # every gold normalizes to "": unanswerable
    ],
)
def test_v2_empty_rules(prediction, golds, em, f1_value):
    assert exact_match(prediction, golds) == em
    assert f1(prediction, golds) == f1_value


def test_bare_string_gold_is_rejected():
    with pytest.raises(TypeError, match="not a str"):
        exact_match("Denver", "Denver")


def test_squad_scores_v1():
    gold = {"q1": ["Denver Broncos"], "q2": ["Denver Broncos", "Broncos"], "q3": ["Santa Clara"]}
    preds = {"q1": "the Denver Broncos", "q2": "Denver", "q3": "Levi's Stadium"}
    scores = squad_scores(preds, gold)
    # EM: 1, 0, 0. F1: 1; q2 max(p 1 r 1/2 -> 2/3, 0) = 2/3; 0.
    assert scores == {
        "exact_match": pytest.approx(100 / 3),
        "f1": pytest.approx(100 * (1 + 2 / 3) / 3),
        "count": 3,
        "missing": 0,
    }


def test_squad_scores_v2_splits_has_ans_and_no_ans():
    gold = {"q1": ["Denver Broncos"], "q2": ["Denver Broncos"], "q3": [], "q4": []}
    preds = {"q1": "Denver Broncos", "q2": "Broncos", "q3": "", "q4": "Carolina"}
    scores = squad_scores(preds, gold)
    assert scores["exact_match"] == pytest.approx(50.0)  # 1, 0, 1, 0
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert scores["count"] == 4
    assert scores["HasAns_exact_match"] == pytest.approx(50.0)
    assert scores["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert scores["HasAns_total"] == 2
    assert scores["NoAns_exact_match"] == pytest.approx(50.0)
    assert scores["NoAns_f1"] == pytest.approx(50.0)
    assert scores["NoAns_total"] == 2


def test_missing_predictions_count_as_empty():
    gold = {"q1": ["Denver"], "q2": []}
    scores = squad_scores({}, gold)
    assert scores["missing"] == 2
    # "" is wrong for q1 and right for the unanswerable q2
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["HasAns_exact_match"] == 0.0
    assert scores["NoAns_exact_match"] == 100.0


def test_prediction_for_unknown_id_raises():
    with pytest.raises(ValueError, match="not in the gold"):
        squad_scores({"q1": "Denver", "stray": "x"}, {"q1": ["Denver"]})


def test_empty_gold_gives_zeros():
    assert squad_scores({}, {}) == {"exact_match": 0.0, "f1": 0.0, "count": 0, "missing": 0}


def test_all_unanswerable_reports_an_empty_has_ans_group():
    scores = squad_scores({"q1": ""}, {"q1": []})
    assert scores["exact_match"] == 100.0
    assert scores["HasAns_total"] == 0
    assert scores["HasAns_exact_match"] == 0.0
    assert scores["NoAns_total"] == 1
