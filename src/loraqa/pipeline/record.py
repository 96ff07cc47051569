"""What a run records about itself besides its scores: where it came from (library versions, git
commit, command) and what it cost (parameters, adapter size, wall times); and `finish`, the one
place at the end of a run where the summary is written and results from outside the Trainer go."""

from __future__ import annotations

import hashlib
import subprocess
import time
from importlib import metadata
from pathlib import Path

from loraqa.pipeline.prepare_phase import Prepared
from loraqa.runs.atomic import write_json_atomic

LIBRARIES = ("loraqa", "torch", "transformers", "peft")


def versions() -> dict[str, str | None]:
    """Installed versions, from package metadata; None for one that is not installed."""
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit(directory: str | Path = ".") -> str | None:
    """HEAD of the git repository holding `directory` (the working directory by default), or None:
    not a repository, no git installed, or git too slow. Never raises."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def provenance(prepared: Prepared, command: list[str] | None) -> dict:
    """The summary.json entries the report's provenance and cost columns read."""
    return {
        "trainable_params": prepared.trainable_params,
        "total_params": prepared.total_params,
        "trainable_share": round(prepared.trainable_share, 4),
        "versions": versions(),
        "git_commit": git_commit(),
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


def finish(prepared: Prepared, summary: dict) -> dict:
    """End of a run: stamp the wall times, write summary.json (atomically), return the summary.
    Anything that records a run elsewhere (trackers) hooks in here, after the summary is complete."""
    summary["phase_seconds"] = dict(prepared.phase_seconds)
    summary["total_seconds"] = round(time.perf_counter() - prepared.started, 1)
    write_json_atomic(prepared.run.path / "summary.json", summary)
    return summary
