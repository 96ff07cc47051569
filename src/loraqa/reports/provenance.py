"""Where a run came from: library versions, git commit and the command, as recorded or as now.

The pipeline is asked to record, in summary.json: `versions` ({"loraqa", "torch", "transformers",
"peft", ...}), `git_commit` and `command` (argv list or string). What a run did not record is
filled from the current environment and labelled so, never passed off as the run's own.
"""

from __future__ import annotations

import functools
import shlex
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from loraqa.reports.reading import RunRecord

LIBRARIES = ("loraqa", "torch", "transformers", "peft")


@dataclass
class Provenance:
    versions: dict[str, str]
    recorded: set[str]  # the libraries whose version the run itself recorded
    commit: str | None
    commit_recorded: bool
    command: str | None


def run_provenance(run: RunRecord) -> Provenance:
    recorded_versions = run.summary.get("versions")
    recorded_versions = dict(recorded_versions) if isinstance(recorded_versions, dict) else {}
    if "loraqa" not in recorded_versions and run.adapter_meta.get("loraqa_version"):
        recorded_versions["loraqa"] = run.adapter_meta["loraqa_version"]  # the adapter's loraqa.json records it
    versions = current_versions()
    recorded = {lib for lib in LIBRARIES if recorded_versions.get(lib)}
    versions.update({lib: str(recorded_versions[lib]) for lib in recorded})
    commit = run.summary.get("git_commit")
    commit_recorded = isinstance(commit, str) and bool(commit)
    if not commit_recorded:
        commit = current_commit()
    return Provenance(versions, recorded, commit, commit_recorded, recorded_command(run))


def recorded_command(run: RunRecord) -> str | None:
    """The run's recorded command as one shell line; an argv list is quoted (shlex) so the line
    pastes back into a shell as the same arguments (a path with a space stays one argument)."""
    command = run.summary.get("command")
    if isinstance(command, list):
        return shlex.join(str(part) for part in command)
    return command if isinstance(command, str) and command else None


def current_versions() -> dict[str, str]:
    """Installed versions from package metadata (importing torch just for a version is too slow)."""
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return versions


@functools.lru_cache(maxsize=1)
def current_commit() -> str | None:
    """HEAD of the git checkout loraqa is imported from, or None (not a checkout, or no git)."""
    source = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None
