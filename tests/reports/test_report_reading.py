"""Reading run directories: what exists is read, what is missing or broken never stops a report."""

from __future__ import annotations

import pytest
from synthetic_runs import write_run

from loraqa.errors import LoraqaError
from loraqa.reports.curves import ema, evaluation_metric, training_loss
from loraqa.reports.reading import ReportError, read_source


def test_a_run_directory_and_a_comparison_directory(tmp_path):
    write_run(tmp_path / "cmp" / "a", r=4, decodings=("greedy", "beam2"))
    write_run(tmp_path / "cmp" / "b", r=16)
    (tmp_path / "cmp" / "notes").mkdir()  # not a run: ignored
    one = read_source(tmp_path / "cmp" / "a")
    assert one.kind == "run" and [r.name for r in one.runs] == ["a"]
    run = one.runs[0]
    assert run.finished and run.baseline.metrics["f1"] == 20.0 and len(run.adapter.rows) == 4
    assert [e.decoding for e in run.extra_evaluations] == ["beam2", "greedy"]
    both = read_source(tmp_path / "cmp")
    assert both.kind == "comparison" and [r.name for r in both.runs] == ["a", "b"]


def test_neither_run_nor_runs_is_a_one_line_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ReportError, match="holds no config.yaml") as caught:
        read_source(tmp_path / "empty")
    assert isinstance(caught.value, LoraqaError) and "\n" not in str(caught.value)
    with pytest.raises(ReportError, match="not a directory"):
        read_source(tmp_path / "missing")


def test_broken_files_become_problems_not_crashes(tmp_path):
    run_dir = write_run(tmp_path / "a")
    (run_dir / "summary.json").write_text("{not json")
    with open(run_dir / "train_log.jsonl", "a") as handle:
        handle.write('{"loss": 1.0, "st')  # a run killed mid-line
    run = read_source(run_dir).runs[0]
    assert not run.summary and not run.finished
    assert any("summary.json unreadable" in p for p in run.problems)
    assert any("1 unreadable line" in p for p in run.problems)
    assert training_loss(run.log)[0]  # the good lines are still there


def test_curves_separate_training_and_evaluation_entries():
    log = [
        {"loss": 2.0, "step": 1},
        {"loss": float("nan"), "step": 2},
        {"eval_loss": 1.5, "eval_f1": 30.0, "step": 2},
        {"loss": 1.0, "step": 3},
        {"train_loss": 1.5, "step": 3},
    ]
    assert training_loss(log) == ([1.0, 3.0], [2.0, 1.0])
    assert evaluation_metric(log, "eval_f1") == ([2.0], [30.0])


def test_ema_is_debiased_like_tensorboard():
    assert ema([4.0, 4.0, 4.0]) == pytest.approx([4.0, 4.0, 4.0])  # no pull towards zero
    # by hand, weight 0.5: s1 = 0.5*2 = 1 -> 1/0.5 = 2; s2 = 0.5*1 + 0.5*4 = 2.5 -> 2.5/0.75
    assert ema([2.0, 4.0], weight=0.5) == pytest.approx([2.0, 2.5 / 0.75])
    assert ema([1.0, 5.0], weight=0.0) == [1.0, 5.0]
