"""Where a run came from, as the report shows it: the run's recorded versions, commit and command,
or, for what it did not record, today's (runs/provenance.py), labelled so and never passed off as
the run's own."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from loraqa.runs import provenance
from loraqa.runs.record import RunRecord

NOT_INSTALLED = "not installed"


@dataclass
class Provenance:
    versions: dict[str, str]
    recorded: set[str]  # the libraries whose version the run itself recorded
    commit: str | None
    commit_recorded: bool
    command: str | None


def run_provenance(run: RunRecord) -> Provenance:
    summary = run.summary
    recorded_versions = dict(summary.versions) if summary is not None else {}
    if "loraqa" not in recorded_versions and run.adapter_meta.get("loraqa_version"):
        recorded_versions["loraqa"] = run.adapter_meta["loraqa_version"]  # the adapter's loraqa.json records it
    versions = {lib: version or NOT_INSTALLED for lib, version in provenance.versions().items()}
    recorded = {lib for lib in provenance.LIBRARIES if recorded_versions.get(lib)}
    versions.update({lib: str(recorded_versions[lib]) for lib in recorded})
    commit = summary.git_commit if summary is not None else None
    commit_recorded = bool(commit)
    if not commit_recorded:
        commit = provenance.source_commit()
    return Provenance(versions, recorded, commit, commit_recorded, recorded_command(run))


def recorded_command(run: RunRecord) -> str | None:
    """The run's recorded command as one shell line; an argv list is quoted (shlex) so the line
    pastes back into a shell as the same arguments (a path with a space stays one argument)."""
    command = run.summary.command if run.summary is not None else None
    if isinstance(command, list):
        return shlex.join(str(part) for part in command)
    return command or None
