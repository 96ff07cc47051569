"""Shared fixtures: tiny models of every family and a small synthetic SQuAD-style data set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_tiny_model, synthetic_records, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def qa_rows() -> list[dict]:
    return synthetic_records(40)


@pytest.fixture(scope="session")
def qa_files(tmp_path_factory, qa_rows) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qa-data")
    return {
        "train": write_jsonl(root / "train.jsonl", qa_rows[:32]),
        "test": write_jsonl(root / "test.jsonl", qa_rows[32:]),
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, qa_rows):
    """Build each tiny family once per session; returns a function family -> directory."""
    root = tmp_path_factory.mktemp("tiny-models")
    corpus = [r["context"] + " " + r["question"] for r in qa_rows] * 3
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(family, root / family, corpus)
        return built[family]

    return get


@pytest.fixture(autouse=True)
def _hub_offline_mode_stays_per_test(monkeypatch):
    """`models/hub_check.py` turns offline mode on in the process's environment when the hub is unreachable
    and the model is cached (what a user's command wants); in one test it must not outlive that test, or
    every later subprocess (`loraqa train` in the kill tests) runs in another mode than the test process."""
    import os

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
