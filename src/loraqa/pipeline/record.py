"""What a run records about itself besides its scores: where it came from (library versions, git
commit, command: runs/provenance.py) and what it cost (parameters, adapter size, wall times); and
`finish`, the one place at the end of a run where the summary is written."""

from __future__ import annotations

import hashlib
import time

from loraqa.pipeline.prepare_phase import Prepared
from loraqa.runs.provenance import source_commit, versions
from loraqa.runs.summary import RunSummary, write_summary


def provenance(prepared: Prepared, command: list[str] | None) -> dict:
    """The RunSummary fields the report's provenance and cost columns read."""
    return {
        "trainable_params": prepared.trainable_params,
        "total_params": prepared.total_params,
        "trainable_percent": round(prepared.trainable_percent, 4),
        "versions": versions(),
        "git_commit": source_commit(),
        "command": list(command) if command is not None else None,
        "formulation": prepared.spec.formulation.name,
        "questions": question_fingerprints(prepared),
        "leakage": prepared.data.leakage,  # held-out contexts/questions also in train (data/leakage.py)
    }


def question_fingerprints(prepared: Prepared) -> dict[str, dict]:
    """Per split, its question count and a SHA-256 of its ids in order: two runs with equal
    fingerprints trained, chose and were tested on the same questions."""
    splits = {"train": prepared.data.train, "validation": prepared.data.validation, "test": prepared.data.test}
    return {
        split: {
            "count": len(records),
            "ids_sha256": hashlib.sha256("\n".join(r.id for r in records).encode()).hexdigest(),
        }
        for split, records in splits.items()
    }


def finish(prepared: Prepared, summary: RunSummary) -> RunSummary:
    """End of a run: stamp the wall times, write summary.json (atomically), return the summary.
    Anything that records a run elsewhere (trackers) hooks in here, after the summary is complete."""
    summary.phase_seconds = dict(prepared.phase_seconds)
    summary.total_seconds = round(time.perf_counter() - prepared.started, 1)
    write_summary(prepared.run.path, summary)
    return summary
