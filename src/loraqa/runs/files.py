"""The names of everything loraqa writes into a run directory (and into sweep and comparison folders).

The one home of these names: every producer (pipeline, evaluation, trackers, sweeps, compare, reports)
and every reader (reports, sweeps, compare, the API, the server) imports them from here, so a renamed
file cannot leave a reader looking for the old name.

A run directory, as far as the run got:

    config.yaml          the resolved config (written first; its presence marks a run)
    checkpoints/         Trainer checkpoints (checkpoints/.staging: one being written)
    adapter/             the adapter: peft's files, the tokenizer, loraqa.json, README.md
    baseline/            the base model alone on the test split (an evaluation folder)
    metrics.json         the adapter on the test split (an evaluation: see below)
    train_log.jsonl      transformers' `trainer.state.log_history`, one JSON object per line
    summary.json         `RunSummary` (runs/summary.py): written last, when the run finished
    report.md, report.html, report_files/   `loraqa report`
    tensorboard/, wandb/, tracking.json     experiment trackers (training/tracking.py)

An evaluation folder holds `predictions.json` ({id: answer}, the official SQuAD format),
`predictions.jsonl` (one row per question) and `metrics.json`, written last.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
TRAIN_LOG_FILE = "train_log.jsonl"
CHECKPOINTS_DIR = "checkpoints"
STAGING_DIR = ".staging"  # checkpoints/.staging: a checkpoint being written (training/trainer.py)
ADAPTER_DIR = "adapter"
ADAPTER_META_FILE = "loraqa.json"  # inside adapter/ (lora/adapter_files.py checks its keys)
BASELINE_DIR = "baseline"
VALIDATION_DIR = "validation"  # the adapter on the validation split (pipeline/evaluate_phase.py)
LOCK_FILE = ".lock"
TRACKING_FILE = "tracking.json"  # run ids, so a resumed run continues its W&B and MLflow runs
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"  # wandb makes it itself, under the run directory

# An evaluation folder (the run itself, baseline/, or a `loraqa eval` output).
METRICS_FILE = "metrics.json"  # written last: its presence marks a complete evaluation
PREDICTIONS_FILE = "predictions.json"
QUESTION_ROWS_FILE = "predictions.jsonl"
EVALUATION_FILES = (METRICS_FILE, PREDICTIONS_FILE, QUESTION_ROWS_FILE)

# `loraqa report`, into whatever directory it reports on.
REPORT_HTML = "report.html"
REPORT_MARKDOWN = "report.md"
REPORT_FILES_DIR = "report_files"
REPORT_FILES = (REPORT_MARKDOWN, REPORT_HTML, REPORT_FILES_DIR)

# A sweep directory: its summary, its Optuna storage, and in each trial's run directory its record.
SWEEP_FILE = "sweep.json"
STUDY_FILE = "study.db"
TRIAL_FILE = "sweep_trial.json"

# A comparison directory (`loraqa compare`).
COMPARISON_FILE = "comparison.json"
CHANGES_FILE = "changes.jsonl"  # compare of finished runs: the questions each run fixed or broke

# Every name a run directory may hold, for the overwrite and crash-cleanup rules (runs/rundir.py).
RUN_CONTENTS = (
    CONFIG_FILE,
    CHECKPOINTS_DIR,
    ADAPTER_DIR,
    BASELINE_DIR,
    VALIDATION_DIR,
    *EVALUATION_FILES,
    TRAIN_LOG_FILE,
    SUMMARY_FILE,
    *REPORT_FILES,
    TENSORBOARD_DIR,
    WANDB_DIR,
    TRACKING_FILE,
)


def holds_run(path: str | Path) -> bool:
    """True when `path` is a run directory (it holds the config a run writes first)."""
    return (Path(path) / CONFIG_FILE).is_file()


def is_finished_run(path: str | Path) -> bool:
    """True when `path` holds a run that finished (its summary, written last)."""
    return Path(path).is_dir() and (Path(path) / SUMMARY_FILE).is_file()


def adapter_meta_path(run_dir: str | Path) -> Path:
    """The adapter's loraqa.json inside a run directory."""
    return Path(run_dir) / ADAPTER_DIR / ADAPTER_META_FILE
