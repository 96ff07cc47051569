"""Everything a run directory holds, read into plain data for whoever shows or compares runs.

A run directory (runs/files.py lists it) holds `config.yaml` and, as far as the run got: its summary
(`RunSummary`), the adapter's test evaluation, the baseline's, the train log, the adapter's
loraqa.json, and evaluations written later by `loraqa eval` (`eval/metrics.json`, or
`eval/<decoding>/metrics.json` for several).

Every file is optional except `config.yaml`: a missing file leaves its field empty, an unreadable
one is recorded in `RunRecord.problems` instead of stopping the reader. Nothing here loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loraqa.runs.files import (
    ADAPTER_DIR,
    BASELINE_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    QUESTION_ROWS_FILE,
    REPORT_FILES_DIR,
    TRAIN_LOG_FILE,
    adapter_meta_path,
)
from loraqa.runs.reading import read_json, read_jsonl, read_yaml_mapping
from loraqa.runs.summary import RunSummary, read_summary

# Subdirectories of a run that never hold an evaluation of its own.
NOT_EVALUATIONS = {CHECKPOINTS_DIR, ADAPTER_DIR, BASELINE_DIR, REPORT_FILES_DIR}


@dataclass
class Evaluation:
    """One evaluation of a model on the test split: its metrics.json and predictions.jsonl rows."""

    label: str
    metrics: dict
    rows: list[dict] = field(default_factory=list)

    @property
    def decoding(self) -> str | None:
        return self.metrics.get("decoding")


@dataclass
class RunRecord:
    """Everything one run left; fields are empty where the run left nothing."""

    name: str
    path: Path
    config: dict
    summary: RunSummary | None = None  # None: the run did not finish (or its summary is unreadable)
    adapter: Evaluation | None = None  # the adapter on the test split, written by `loraqa train`
    baseline: Evaluation | None = None
    extra_evaluations: list[Evaluation] = field(default_factory=list)  # `loraqa eval` runs (decodings)
    log: list[dict] = field(default_factory=list)
    adapter_meta: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.summary is not None and self.adapter is not None


def read_run(path: Path) -> RunRecord:
    """The run in `path` (which holds config.yaml); what cannot be read is named in `problems`."""
    problems: list[str] = []
    config = read_yaml_mapping(path / CONFIG_FILE, problems) or {}
    run = RunRecord(name=path.name, path=path, config=config, problems=problems)
    run.summary = read_summary(path, problems)
    run.adapter = read_evaluation(path, "adapter", problems)
    run.baseline = read_evaluation(path / BASELINE_DIR, "baseline", problems)
    run.log = read_jsonl(path / TRAIN_LOG_FILE, problems)
    meta = read_json(adapter_meta_path(path), problems)
    run.adapter_meta = meta if isinstance(meta, dict) else {}
    run.extra_evaluations = _read_extra_evaluations(path, problems)
    return run


def read_evaluation(directory: Path, label: str, problems: list[str] | None = None) -> Evaluation | None:
    """The evaluation in `directory` (its metrics.json and per-question rows), or None without metrics."""
    metrics = read_json(directory / METRICS_FILE, problems)
    if not isinstance(metrics, dict):
        return None
    return Evaluation(label, metrics, read_jsonl(directory / QUESTION_ROWS_FILE, problems))


def _read_extra_evaluations(run_path: Path, problems: list[str]) -> list[Evaluation]:
    """`loraqa eval` output inside the run: DIR/metrics.json, or DIR/<decoding>/metrics.json each."""
    found = []
    for directory in sorted(p for p in run_path.iterdir() if p.is_dir() and p.name not in NOT_EVALUATIONS):
        if (directory / METRICS_FILE).is_file():
            candidates = [directory]
        else:
            candidates = sorted(p for p in directory.iterdir() if p.is_dir() and (p / METRICS_FILE).is_file())
        for candidate in candidates:
            evaluation = read_evaluation(candidate, str(candidate.relative_to(run_path)), problems)
            if evaluation is not None:
                found.append(evaluation)
    return found
