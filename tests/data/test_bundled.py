"""The SQuAD v1.1 files shipped in the package load by name, with the official counts."""

from __future__ import annotations

import pytest

from loraqa.data import load_records
from loraqa.data.bundled import BUNDLED, bundled_path


@pytest.fixture(scope="module")
def dev():
    return load_records("squad-v1.1:dev")


@pytest.fixture(scope="module")
def train():
    return load_records("squad-v1.1:train")  # ~1 s: loaded once for the module


def test_dev_counts_and_first_question(dev):
    assert len(dev.records) == 10_570
    assert sum(len(r.answers) for r in dev.records) == 34_726  # several answers per question, all kept
    assert len({r.context for r in dev.records}) == 2_067
    first = dev.records[0]
    assert first.id == "56be4db0acb8001400a502ec" and first.title == "Super_Bowl_50"
    assert first.answers[0].text == "Denver Broncos" and first.answers[0].answer_start == 177
    assert dev.version_2 is False and dev.skipped == {} and dev.source == "squad-v1.1:dev"


def test_train_counts(train):
    assert len(train.records) == 87_599
    assert sum(len(r.answers) for r in train.records) == 87_599
    assert len({r.title for r in train.records}) == 442
    assert train.records[0].id == "recon-train-00001" and train.records[0].title == "University_of_Notre_Dame"
    assert train.version_2 is False and train.skipped == {}


def test_bundled_folder_carries_licence_and_provenance():
    folder = bundled_path("squad-v1.1:dev").parent
    assert {"ATTRIBUTION.md", "SOURCE.md"} <= {p.name for p in folder.iterdir()}
    assert "CC BY-SA 4.0" in (folder / "ATTRIBUTION.md").read_text()
    assert all(bundled_path(name).is_file() for name in BUNDLED)
