"""The validation split exists only when something reads it, and never swallows a small data set."""

from __future__ import annotations

import pytest
from tiny_models import synthetic_records, write_jsonl

from loraqa.config.loader import load_config
from loraqa.config.schema import DataConfig
from loraqa.config.validate import needs_validation
from loraqa.data.prepare import carved_validation_size, load_run_data
from loraqa.errors import ConfigError


@pytest.fixture
def small_files(tmp_path):
    rows = synthetic_records(40)
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", rows[:30]),
        "test": write_jsonl(tmp_path / "t.jsonl", rows[30:]),
    }


def test_needs_validation_only_when_training_reads_it():
    assert not needs_validation(load_config(None, []))
    assert needs_validation(load_config(None, ["training.eval_strategy=epoch"]))
    assert needs_validation(load_config(None, ["training.eval_strategy=steps", "training.eval_steps=5"]))
    assert needs_validation(
        load_config(
            None,
            [
                "training.eval_strategy=epoch",
                "training.save_strategy=epoch",
                "training.load_best_model_at_end=true",
                "training.early_stopping_patience=2",
            ],
        )
    )


def test_without_validation_train_keeps_every_question(small_files):
    data = DataConfig(train=str(small_files["train"]), test=str(small_files["test"]))  # default 200 validation
    run = load_run_data(data, validation=False)
    assert len(run.train) == 30 and run.validation == []


def test_carved_validation_is_scaled_down_with_a_note(small_files, capsys):
    data = DataConfig(train=str(small_files["train"]), test=str(small_files["test"]))  # asks for 200 of 30
    run = load_run_data(data, validation=True)
    assert len(run.validation) == 3 and len(run.train) == 27
    assert not {r.context for r in run.validation} & {r.context for r in run.train}
    note = capsys.readouterr().err
    assert "carving 3 for validation instead of data.validation_samples=200" in note


def test_carved_size_is_a_tenth_at_most_and_at_least_one():
    assert carved_validation_size(200, 87_599) == 200
    assert carved_validation_size(200, 30) == 3
    assert carved_validation_size(200, 5) == 1
    assert carved_validation_size(0, 30) == 0


def test_zero_validation_samples_is_accepted_when_nothing_reads_it(small_files):
    config = load_config(None, ["data.validation_samples=0", f"data.train={small_files['train']}"])
    assert load_run_data(config.data, validation=True).validation == []


def test_zero_validation_samples_is_refused_when_training_evaluates():
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["data.validation_samples=0", "training.eval_strategy=epoch"])
    message = str(caught.value)
    assert "'data.validation_samples'" in message and "training.eval_strategy=epoch" in message
    assert "\n" not in message
