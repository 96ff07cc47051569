"""What a report is about, and the one error `loraqa report` raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loraqa.errors import LoraqaError
from loraqa.runs.record import RunRecord


class ReportError(LoraqaError):
    """The directory given to `loraqa report` holds neither a run nor runs."""


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
