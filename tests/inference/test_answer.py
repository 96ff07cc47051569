"""The one `Answer`: the JSON line `loraqa predict` writes, and withholding below a confidence."""

from __future__ import annotations

import json

from loraqa.inference.answer import Answer

ADA = Answer("Ada", 0.62, 10, 13, False, raw_confidence=0.7, id="q1", question="Who?")


def test_the_predict_line_keeps_its_fields_and_order():
    line = json.dumps(ADA.prediction_row(), ensure_ascii=False)
    assert line == (
        '{"id": "q1", "question": "Who?", "answer": "Ada", "no_answer": false, '
        '"confidence": 0.62, "raw_confidence": 0.7, "abstained": false}'
    )


def test_an_answer_below_min_confidence_is_withheld_and_says_so():
    withheld = ADA.withheld_below(0.63)
    assert (withheld.text, withheld.start, withheld.end) == ("", None, None)
    assert withheld.abstained and withheld.no_answer
    assert (withheld.confidence, withheld.raw_confidence, withheld.id) == (0.62, 0.7, "q1")  # what it was withheld for


def test_an_answer_at_or_above_min_confidence_stands():
    assert ADA.withheld_below(0.62) is ADA
    assert ADA.withheld_below(None) is ADA
    assert ADA.withheld_below(0.0) is ADA
