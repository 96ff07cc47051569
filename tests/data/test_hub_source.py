"""`hub:NAME[:SPLIT]` sources, with `datasets.load_dataset` replaced (the tests run offline)."""

from __future__ import annotations

import datasets
import pytest

from loraqa.data import Answer, load_records
from loraqa.errors import DataError

CONTEXT = "The Denver Broncos beat the Carolina Panthers in Super Bowl 50."


def hf_row(qid, texts, starts, question="Who won Super Bowl 50?"):
    answers = {"text": texts, "answer_start": starts}
    return {"id": qid, "title": "Super_Bowl_50", "context": CONTEXT, "question": question, "answers": answers}


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []
    tables = {
        ("rajpurkar/squad", "validation"): [hf_row("a", ["Denver Broncos"], [4])],
        ("rajpurkar/squad", "train"): [hf_row("t", ["Broncos"], [11])],
        ("rajpurkar/squad_v2", "validation"): [
            hf_row("a", ["Denver Broncos"], [4]),
            hf_row("b", [], [], "Who won Super Bowl 51?"),  # unanswerable: only the empty answers say so
        ],
        ("me/broken", "train"): [hf_row("a", ["Broncos"], [0])],
    }

    def load_dataset(name, split=None, **kwargs):
        calls.append((name, split))
        if (name, split) not in tables:
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")
        return tables[(name, split)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_split_is_passed_and_rows_become_records(fake_hub):
    result = load_records("hub:rajpurkar/squad:validation")
    assert fake_hub == [("rajpurkar/squad", "validation")]
    record = result.records[0]
    assert record.id == "a" and record.title == "Super_Bowl_50" and record.answers == (Answer("Denver Broncos", 4),)
    assert result.source == "hub:rajpurkar/squad:validation" and result.version_2 is False


def test_hub_split_defaults_to_train(fake_hub):
    assert load_records("hub:rajpurkar/squad").records[0].id == "t"
    assert fake_hub == [("rajpurkar/squad", "train")]


def test_hub_squad_v2_is_detected_from_empty_answers(fake_hub):
    result = load_records("hub:rajpurkar/squad_v2:validation")
    assert result.version_2 is True and [r.is_impossible for r in result.records] == [False, True]


def test_hub_failures_are_data_errors_naming_the_source(fake_hub):
    with pytest.raises(DataError) as info:
        load_records("hub:nobody/nothing:test")
    assert str(info.value).startswith("hub:nobody/nothing:test: ")
    assert "cannot load dataset 'nobody/nothing' split 'test'" in info.value.problem
    assert "doesn't exist" in info.value.problem


def test_hub_bad_rows_name_the_row(fake_hub):
    with pytest.raises(DataError) as info:
        load_records("hub:me/broken")
    assert info.value.record == "a" and "does not match the context" in info.value.problem


def test_hub_source_needs_a_name(fake_hub):
    with pytest.raises(DataError, match="needs a dataset name"):
        load_records("hub:")
    assert fake_hub == []
