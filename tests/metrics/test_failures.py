"""One example per failure category, plus the order in which the checks apply."""

import pytest

from loraqa.metrics import FAILURE_CATEGORIES, failure_category

QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"


@pytest.mark.parametrize(
    ("prediction", "golds", "category"),
    [
        ("The Denver Broncos.", ["Denver Broncos"], None),
        ("", [], None),
        ("Denver Broncos", [], "answered_unanswerable"),
        ("", ["Denver Broncos"], "empty"),
        ("the", ["Denver Broncos"], "empty"),  # normalizes to ""
        ("the AFC at Super Bowl 50", ["Denver Broncos"], "echoes_question"),
        ("Denver Broncos of the AFC", ["Denver Broncos"], "longer_than_gold"),
        ("Broncos", ["Denver Broncos"], "partial"),
        ("Carolina Panthers", ["Denver Broncos"], "wrong_span"),
    ],
)
def test_each_category(prediction, golds, category):
    assert failure_category(prediction, golds, QUESTION) == category


def test_echo_needs_no_shared_token_with_gold():
    # all tokens come from the question, but "afc" is also the gold: scored, not an echo
    assert failure_category("AFC team", ["AFC"], QUESTION) == "longer_than_gold"


def test_echo_threshold_is_sixty_percent():
    # 3 of 5 tokens from the question -> echo; 2 of 5 -> not
    assert failure_category("nfl team afc foo bar", ["Denver"], QUESTION) == "echoes_question"
    assert failure_category("nfl team baz foo bar", ["Denver"], QUESTION) == "wrong_span"


def test_gold_inside_prediction_only_on_token_boundaries():
    # "50" is a substring of "500" but not a token of it
    assert failure_category("500", ["50"], "How many?") == "wrong_span"
    assert failure_category("50 yards", ["50"], "How many?") == "longer_than_gold"


def test_every_category_is_listed():
    assert set(FAILURE_CATEGORIES) == {
        "answered_unanswerable",
        "empty",
        "echoes_question",
        "longer_than_gold",
        "partial",
        "wrong_span",
    }
