"""Read what a run directory holds into plain data, for reports; nothing here trains or loads a model.

A run directory (see runs/rundir.py) holds `config.yaml` and, as far as the run got:
`summary.json`, `metrics.json` + `predictions.jsonl` (the adapter on the test split),
`baseline/` (the base model alone, same questions), `train_log.jsonl` (transformers'
`trainer.state.log_history`, one JSON object per line), `adapter/loraqa.json`, and evaluations
written later by `loraqa eval` (`eval/metrics.json`, or `eval/<decoding>/metrics.json` for several).

Every file is optional except `config.yaml`: a missing file leaves its field empty, an unreadable
one is recorded in `RunRecord.problems` (shown in the report) instead of stopping the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from loraqa.errors import LoraqaError

CONFIG_FILE = "config.yaml"  # same name as runs/rundir.py; not imported so reports stay a leaf reader
# Subdirectories of a run that never hold an evaluation of its own.
NOT_EVALUATIONS = {"checkpoints", "adapter", "baseline", "report_files"}


class ReportError(LoraqaError):
    """The directory given to `loraqa report` holds neither a run nor runs."""


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
    """Everything a report shows about one run; fields are empty where the run left nothing."""

    name: str
    path: Path
    config: dict
    summary: dict = field(default_factory=dict)
    adapter: Evaluation | None = None  # the adapter on the test split, written by `loraqa train`
    baseline: Evaluation | None = None
    extra_evaluations: list[Evaluation] = field(default_factory=list)  # `loraqa eval` runs (decodings)
    log: list[dict] = field(default_factory=list)
    adapter_meta: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return bool(self.summary) and self.adapter is not None


@dataclass
class ReportSource:
    """What a report is about: one run, or several side by side.

    `kind` is "run", "comparison" or "sweep" (reports/sweep.py: `details` holds the sweep's
    summary and trials, while its trials are ordinary runs in `runs`).
    """

    kind: str
    path: Path
    runs: list[RunRecord]
    details: dict = field(default_factory=dict)


def read_source(path: str | Path) -> ReportSource:
    """A run directory (holds config.yaml) or a directory of run directories; else ReportError."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory; give a run directory or a directory of runs")
    if (path / CONFIG_FILE).is_file():
        return ReportSource("run", path, [read_run(path)])
    children = sorted(p for p in path.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())
    from loraqa.reports.sweep import is_sweep_directory, read_sweep  # sweep.py builds on this module

    if is_sweep_directory(path):
        return read_sweep(path, [read_run(p) for p in children])
    if children:
        return ReportSource("comparison", path, [read_run(p) for p in children])
    existing = _existing_comparison(path)
    if existing is not None:
        return existing
    raise ReportError(
        f"{path}: holds no {CONFIG_FILE} and no subdirectory with one; give a run directory or a directory of runs"
    )


def _existing_comparison(path: Path) -> ReportSource | None:
    """A `loraqa compare RUN_DIR ...` of finished runs: its comparison.json names the runs, which live elsewhere."""
    problems: list[str] = []
    comparison = _read_json(path / "comparison.json", problems)
    if not isinstance(comparison, dict) or comparison.get("source") != "existing":
        return None
    runs = [read_run(Path(d)) for d in comparison.get("runs_compared", []) if (Path(d) / CONFIG_FILE).is_file()]
    changes = _read_jsonl(path / "changes.jsonl", problems)
    return ReportSource("comparison", path, runs, {"comparison": comparison, "changes": changes}) if runs else None


def read_run(path: Path) -> RunRecord:
    problems: list[str] = []
    config = _read_yaml(path / CONFIG_FILE, problems) or {}
    run = RunRecord(name=path.name, path=path, config=config, problems=problems)
    run.summary = _read_json(path / "summary.json", problems) or {}
    run.adapter = _read_evaluation(path, "adapter", problems)
    run.baseline = _read_evaluation(path / "baseline", "baseline", problems)
    run.log = _read_jsonl(path / "train_log.jsonl", problems)
    run.adapter_meta = _read_json(path / "adapter" / "loraqa.json", problems) or {}
    run.extra_evaluations = _read_extra_evaluations(path, problems)
    return run


def _read_extra_evaluations(run_path: Path, problems: list[str]) -> list[Evaluation]:
    """`loraqa eval` output inside the run: DIR/metrics.json, or DIR/<decoding>/metrics.json each."""
    found = []
    for directory in sorted(p for p in run_path.iterdir() if p.is_dir() and p.name not in NOT_EVALUATIONS):
        if (directory / "metrics.json").is_file():
            candidates = [directory]
        else:
            candidates = sorted(p for p in directory.iterdir() if p.is_dir() and (p / "metrics.json").is_file())
        for candidate in candidates:
            evaluation = _read_evaluation(candidate, str(candidate.relative_to(run_path)), problems)
            if evaluation is not None:
                found.append(evaluation)
    return found


def _read_evaluation(directory: Path, label: str, problems: list[str]) -> Evaluation | None:
    metrics = _read_json(directory / "metrics.json", problems)
    if not isinstance(metrics, dict):
        return None
    rows = [r for r in _read_jsonl(directory / "predictions.jsonl", problems) if isinstance(r, dict)]
    return Evaluation(label, metrics, rows)


def _read_json(path: Path, problems: list[str]):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name} unreadable ({exc})")
        return None


def _read_yaml(path: Path, problems: list[str]):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"{path.name} unreadable ({str(exc).splitlines()[0]})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a mapping")
        return None
    return data


def _read_jsonl(path: Path, problems: list[str]) -> list[dict]:
    """One JSON object per line; a bad line (a run killed mid-write) is skipped and counted."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name} unreadable ({exc})")
        return []
    entries, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            bad += 1
    if bad:
        problems.append(f"{path.name}: {bad} unreadable line(s) skipped")
    return entries
