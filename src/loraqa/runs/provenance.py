"""Where a run came from: the library versions and the git commit of the code that ran it.

One answer for everyone who records or shows it (the pipeline into summary.json, reports for runs
that recorded nothing, bench/ into its results files).

Which commit: the checkout loraqa itself is imported from, not the working directory's. The commit
is there to name the code that trained the run; the working directory is wherever the user happened
to start the command (their own project, a data folder, no repository at all), so its HEAD names
something else or nothing. Installed from a wheel, loraqa has no checkout: the commit is None and
`versions()["loraqa"]` names the release.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

LIBRARIES = ("loraqa", "torch", "transformers", "peft")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/loraqa
GIT_TIMEOUT_S = 30  # a git on a slow network filesystem; past it the answer is "unknown", not a hang


def versions() -> dict[str, str | None]:
    """Installed versions, from package metadata (importing torch for its version is too slow);
    None for a library that is not installed."""
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git(directory: str | Path, *args: str) -> str | None:
    """`git -C directory ARGS`'s output, stripped; None when git fails, is missing or hangs. Never raises."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit_of(directory: str | Path) -> str | None:
    """HEAD of the git repository holding `directory`, or None (not a repository, or no git)."""
    return git(directory, "rev-parse", "HEAD") or None


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """HEAD of the git checkout loraqa is imported from (the module docstring says why this one)."""
    return commit_of(_PACKAGE_DIR)
