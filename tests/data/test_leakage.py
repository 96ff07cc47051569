"""Leakage between splits (data/leakage.py): held-out contexts and questions also in train are counted."""

from __future__ import annotations

import dataclasses

import pytest

from loraqa.config.schema import DataConfig
from loraqa.data.leakage import split_leakage
from loraqa.data.prepare import RunData, check_leakage
from loraqa.data.sources import load_records
from loraqa.errors import DataError


@pytest.fixture(scope="module")
def squad():
    return load_records("squad-v1.1:train").records, load_records("squad-v1.1:dev").records


def _copied_contexts(dev, count: int) -> list:
    contexts = list(dict.fromkeys(r.context for r in dev))[:count]
    first = {c: next(r for r in dev if r.context == c) for c in contexts}
    return [
        dataclasses.replace(first[c], id=f"copy-{i}", question=f"Another question number {i}?")
        for i, c in enumerate(contexts)
    ]


def test_squad_v1_train_and_dev_share_no_context_and_two_near_duplicates(squad):
    train, dev = squad
    found = split_leakage(train, dev, "test")
    assert found.contexts == 2067 and found.exact_contexts == 0
    # Two Immunology paragraphs sit in both, lightly edited (5-gram Jaccard 0.82 and 0.90): real near-duplicates.
    assert found.near_contexts == 2


def test_ten_dev_contexts_copied_into_train_are_ten_leaked_contexts(squad):
    _, dev = squad
    train = list(load_records("squad-v1.1:train").records[:2000]) + _copied_contexts(dev, 10)
    found = split_leakage(train, dev, "test")
    assert (found.exact_contexts, found.near_contexts) == (10, 0)
    assert "10 of 2067 contexts" in found.describe()


def test_a_lightly_edited_copy_is_a_near_duplicate(squad):
    _, dev = squad
    original = dev[0]
    words = original.context.split()
    edited = dataclasses.replace(original, id="edited", context=" ".join(words[:-3] + ["changed", "ending", "here."]))
    found = split_leakage([edited], [original], "test")
    assert (found.exact_contexts, found.near_contexts) == (0, 1)


def test_the_setting_decides_warn_error_or_ignore(squad, capsys):
    _, dev = squad
    leaked = RunData(train=_copied_contexts(dev, 3), validation=[], test=list(dev[:50]), version_2=False)
    check_leakage(leaked, DataConfig(leakage="warn"))
    assert leaked.leakage["test"]["exact_contexts"] >= 1 and "warning: leakage: test:" in capsys.readouterr().err
    with pytest.raises(DataError, match="test shares contexts with train"):
        check_leakage(RunData(leaked.train, [], leaked.test, False), DataConfig(leakage="error"))
    ignored = RunData(leaked.train, [], leaked.test, False)
    check_leakage(ignored, DataConfig(leakage="ignore"))
    assert ignored.leakage == {}
