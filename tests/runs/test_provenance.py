"""Provenance (runs/provenance.py): the commit recorded is loraqa's own checkout's, wherever the command runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from loraqa.runs import provenance

SRC = Path(__file__).resolve().parents[2] / "src" / "loraqa"


def test_the_commit_is_loraqas_checkout_not_the_working_directorys(tmp_path, monkeypatch):
    other = tmp_path / "project"  # the user's own repository, where they happen to run loraqa
    other.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=other, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "theirs"],
        cwd=other,
        check=True,
    )
    monkeypatch.chdir(other)
    provenance.source_commit.cache_clear()
    ours = subprocess.run(["git", "-C", str(SRC), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert provenance.source_commit() == ours and len(ours) == 40
    assert provenance.commit_of(other) != ours  # the working directory's HEAD is another commit


def test_git_never_raises_outside_a_repository(tmp_path):
    assert provenance.commit_of(tmp_path) is None
    assert provenance.git(tmp_path / "missing", "status") is None


def test_versions_name_every_library_and_none_for_a_missing_one(monkeypatch):
    monkeypatch.setattr(provenance, "LIBRARIES", ("torch", "no-such-package-loraqa"))
    found = provenance.versions()
    assert found["torch"] and found["no-such-package-loraqa"] is None
