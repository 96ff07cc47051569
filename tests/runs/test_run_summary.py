"""summary.json through `RunSummary` (runs/summary.py): a run the pipeline built reads back with every
field its readers use, and summaries written by other loraqa versions still read."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from run_helpers import tiny_config

from loraqa.pipeline import run_training
from loraqa.runs.files import SUMMARY_FILE
from loraqa.runs.record import read_run
from loraqa.runs.summary import RunSummary, read_summary, write_summary

SRC = Path(__file__).resolve().parents[2] / "src" / "loraqa"
# Every module that reads a run's summary: reports, sweeps, compare, the Python API.
READERS = [
    *sorted((SRC / "reports").glob("*.py")),
    SRC / "sweeps" / "trial.py",
    SRC / "experiments" / "compare.py",
    SRC / "api.py",
]
FIELDS = {f.name for f in dataclasses.fields(RunSummary)} - {"extra"}


def fields_the_readers_use() -> set[str]:
    """RunSummary fields read as `summary.NAME` (or compare's `s.NAME`) anywhere in the readers."""
    used = set()
    for path in READERS:
        used |= set(re.findall(r"\b(?:summary|s)\.(\w+)", path.read_text(encoding="utf-8")))
    return used & FIELDS


@pytest.fixture(scope="module")
def built_run(tiny_model_dir, qa_files, tmp_path_factory):
    run = tmp_path_factory.mktemp("summary") / "run"
    returned = run_training(
        tiny_config(tiny_model_dir("gpt2"), qa_files, run), validation=True, command=["loraqa", "train", "x.yaml"]
    )
    return run, returned


def test_the_scan_finds_the_fields_reports_read():
    """The scan itself sees the report's columns (so an empty scan cannot pass the test below)."""
    assert fields_the_readers_use() >= {
        "trainable_params",
        "peak_memory_mib",
        "adapter_vs_baseline",
        "validation",
        "versions",
        "git_commit",
        "command",
        "questions",
        "adapter",
    }


def test_a_pipeline_run_reads_back_with_every_field_its_readers_use(built_run):
    run_dir, returned = built_run
    summary = read_summary(run_dir)
    assert isinstance(summary, RunSummary) and summary.extra == {}  # the pipeline writes only known keys
    assert summary.to_dict() == json.loads(json.dumps(returned))  # what run_training returned is what was written
    missing = [name for name in sorted(fields_the_readers_use()) if getattr(summary, name) in (None, {}, [], "")]
    assert not missing, f"fields readers use but a shipped-defaults run left empty: {missing}"
    assert summary.run_dir == str(run_dir) and summary.formulation == "causal"
    assert summary.command == ["loraqa", "train", "x.yaml"]
    assert set(summary.versions) == {"loraqa", "torch", "transformers", "peft"}
    assert re.fullmatch(r"[0-9a-f]{40}", summary.git_commit)  # these tests run from loraqa's own checkout
    assert 0 < summary.trainable_params < summary.total_params
    assert summary.validation["count"] == summary.questions["validation"]["count"] > 0
    assert summary.adapter["count"] == summary.baseline["count"] == summary.questions["test"]["count"]


def test_the_report_reader_sees_the_same_summary(built_run):
    run_dir, _ = built_run
    record = read_run(run_dir)
    assert record.finished and not record.problems
    assert record.summary == read_summary(run_dir)
    assert record.adapter.metrics["f1"] == record.summary.adapter["f1"]


def test_an_older_or_newer_summary_still_reads(tmp_path):
    """Missing keys keep their defaults, unknown keys survive a rewrite, a mistyped value is named and dropped."""
    (tmp_path / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "run_dir": str(tmp_path),
                "model": "m",
                "adapter": {"f1": 50.0},
                "command": "loraqa train old.yaml",
                "trainable_params": "many",
                "future_key": {"x": 1},
            }
        )
    )
    problems: list[str] = []
    summary = read_summary(tmp_path, problems)
    assert summary.adapter == {"f1": 50.0} and summary.command == "loraqa train old.yaml"
    assert summary.trainable_params is None and summary.versions == {} and summary.validation is None
    assert problems == [f"{SUMMARY_FILE}: 'trainable_params' has an unexpected type (str); ignored"]
    assert summary.extra == {"future_key": {"x": 1}}
    write_summary(tmp_path, summary)
    again = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert again["future_key"] == {"x": 1} and "validation" not in again and again["versions"] == {}


def test_a_summary_that_is_not_an_object_or_not_json_reads_as_none(tmp_path):
    problems: list[str] = []
    assert read_summary(tmp_path, problems) is None and problems == []  # unfinished: no summary, no problem
    (tmp_path / SUMMARY_FILE).write_text("[1, 2]")
    assert read_summary(tmp_path, problems) is None and problems == [f"{SUMMARY_FILE} is not a JSON object"]
    (tmp_path / SUMMARY_FILE).write_text("{not json")
    assert read_summary(tmp_path, problems) is None and "unreadable" in problems[-1]


def test_optional_entries_are_absent_while_none_and_numbers_keep_their_kind():
    data = RunSummary(run_dir="r", model="m", train_seconds=3).to_dict()
    assert "baseline" not in data and "validation" not in data and data["train_seconds"] == 3
    assert data["git_commit"] is None  # always recorded, even when unknown
    assert RunSummary.from_dict({"train_seconds": True}).train_seconds is None  # a bool is not a number
