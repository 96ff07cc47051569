"""`summary.json`, typed: what a finished run records about itself, written once when it ends.

The pipeline builds a `RunSummary` from its phases (pipeline/train.py) and writes it last, so its
presence marks a finished run. Reports, sweeps, compare and the API read it back through
`read_summary`, never by key.

Compatibility: a summary written by an older or newer loraqa still reads. A missing key leaves its
field at the default; a key this version does not know is kept in `extra` (and written back); a
value of the wrong type is dropped (its field keeps the default) and named in `problems`. Renamed
keys are read under their old name too (`trainable_share`, a percentage, is `trainable_percent`).

Metrics dicts (`baseline`, `adapter`, `validation`) are an evaluation's `metrics.json` contents
(inference/evaluate.py): `exact_match`, `f1`, their `_ci` intervals, `slices`, ... for extractive
and generative runs alike, so they stay dicts here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loraqa.atomic import write_json_atomic
from loraqa.runs.files import SUMMARY_FILE
from loraqa.runs.reading import read_json


@dataclass
class RunSummary:
    """One run's summary.json. Optional entries are absent from the file while they are None."""

    run_dir: str = ""
    model: str = ""
    device: str | None = None  # the device plan's description (device.py)
    baseline: dict | None = None  # the base model alone on the test split (its metrics.json)
    train_loss: float | None = None
    train_seconds: float | None = None
    peak_memory_mib: float | None = None  # training's peak; training/memory.py says what it counts
    peak_memory_kind: str | None = None
    peak_memory_per_rank_mib: list | None = None  # under torchrun
    best_model: dict | None = None  # load_best_model_at_end: checkpoint, step, metric, value
    early_stopping: dict | None = None  # stopped, step, max_steps, evaluations_without_improvement, patience
    divergence_warning: str | None = None
    adapter: dict = field(default_factory=dict)  # the adapter on the test split (its metrics.json)
    adapter_vs_baseline: dict | None = None  # paired comparison on the same test questions
    slices_vs_baseline: dict | None = None
    validation: dict | None = None  # the adapter on the validation split: what sweeps and compare choose on
    trainable_params: int | None = None
    total_params: int | None = None
    trainable_percent: float | None = None  # trainable parameters in percent of all (0.73 = 0.73%)
    versions: dict = field(default_factory=dict)  # library -> installed version (runs/provenance.py)
    git_commit: str | None = None  # loraqa's own checkout (runs/provenance.py says why that one)
    command: list | str | None = None  # argv as a list; older runs may hold one string
    formulation: str | None = None
    questions: dict = field(default_factory=dict)  # split -> {count, ids_sha256}
    leakage: dict | None = None  # held-out contexts/questions also in train (data/leakage.py)
    adapter_bytes: int | None = None
    phase_seconds: dict = field(default_factory=dict)
    total_seconds: float | None = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as read

    def to_dict(self) -> dict:
        """The JSON object summary.json holds (optional entries left out while None)."""
        data: dict = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (f.name in _OPTIONAL and value is None):
                continue
            data[f.name] = value
        return {**self.extra, **data}

    @classmethod
    def from_dict(cls, data: dict, problems: list[str] | None = None) -> RunSummary:
        """Tolerant reading: see the module docstring. `problems` collects what was dropped."""
        hints = typing.get_type_hints(cls)
        data = {(_RENAMED[key] if key in _RENAMED and _RENAMED[key] not in data else key): v for key, v in data.items()}
        known, extra = {}, {}
        for key, value in data.items():
            if key == "extra" or key not in hints:
                extra[key] = value
            elif value is None or _has_type(value, hints[key]):
                known[key] = value
            elif problems is not None:
                problems.append(f"{SUMMARY_FILE}: '{key}' has an unexpected type ({type(value).__name__}); ignored")
        summary = cls(**{k: v for k, v in known.items() if v is not None or _may_be_none(hints[k])})
        summary.extra = extra
        return summary


# Keys older loraqa versions wrote, by their name now (same unit).
_RENAMED = {"trainable_share": "trainable_percent"}

# Entries a run writes only when they happened (a baseline, best-model selection, a warning, ...).
_OPTIONAL = frozenset(
    {
        "baseline",
        "peak_memory_mib",
        "peak_memory_kind",
        "peak_memory_per_rank_mib",
        "best_model",
        "early_stopping",
        "divergence_warning",
        "adapter_vs_baseline",
        "slices_vs_baseline",
        "validation",
    }
)


def _has_type(value: Any, hint: Any) -> bool:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if origin not in (int, float) and isinstance(origin, type) and isinstance(value, origin):
            return True
    return False


def _may_be_none(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def summary_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / SUMMARY_FILE


def write_summary(run_dir: str | Path, summary: RunSummary) -> None:
    """Write run_dir/summary.json atomically: it appears whole or not at all."""
    write_json_atomic(summary_path(run_dir), summary.to_dict())


def read_summary(run_dir: str | Path, problems: list[str] | None = None) -> RunSummary | None:
    """The run's summary, or None when it has none (unfinished) or it cannot be read as a JSON object
    (the reason goes to `problems`)."""
    data = read_json(summary_path(run_dir), problems)
    if data is None:
        return None
    if not isinstance(data, dict):
        if problems is not None:
            problems.append(f"{SUMMARY_FILE} is not a JSON object")
        return None
    return RunSummary.from_dict(data, problems)


__all__ = ["RunSummary", "read_summary", "summary_path", "write_summary"]
