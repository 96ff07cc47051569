"""`hub:NAME[:SPLIT]` sources, with `datasets.load_dataset` replaced (the tests run offline)."""

from __future__ import annotations

import datasets
import pytest

from loraqa.data import Answer, hub, load_records
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
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_offline", lambda: False)
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


def test_an_unreachable_hub_fails_at_once_with_the_hint(fake_hub, monkeypatch):
    import socket
    import time

    def no_network(address, timeout=None):
        assert timeout is not None and timeout <= 5  # one short attempt, no retries
        raise OSError("Network is unreachable")

    monkeypatch.undo()  # the real reachability check, over a socket that cannot connect
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("load_dataset would retry for ~88 s"))
    monkeypatch.setattr(socket, "create_connection", no_network)
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    started = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_records("hub:rajpurkar/squad")
    assert time.perf_counter() - started < 5
    assert "cannot reach the Hugging Face Hub" in info.value.problem and "HF_HUB_OFFLINE=1" in info.value.problem


def test_offline_mode_skips_the_network_and_says_only_the_cache_is_used(fake_hub, monkeypatch):
    monkeypatch.setattr(hub, "hub_offline", lambda: True)
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("offline mode must not touch the network"))
    with pytest.raises(DataError) as info:
        load_records("hub:nobody/nothing")
    assert "HF_HUB_OFFLINE=1 allows only the local cache" in info.value.problem


def test_offline_mode_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.hub_offline()
