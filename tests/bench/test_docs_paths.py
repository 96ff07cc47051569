"""The docs name files by their place in the repository, never by a path on one machine."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users)/")


def _docs() -> list[Path]:
    files = [REPO / "README.md", *REPO.glob("docs/**/*.md"), *REPO.glob("bench/**/*.md"), *REPO.glob("src/**/*.md")]
    return [f for f in files if f.is_file()]


def test_docs_have_no_absolute_machine_paths():
    found = [
        f"{doc.relative_to(REPO)}:{number}: {line.strip()}"
        for doc in _docs()
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not found, "absolute machine paths in docs:\n" + "\n".join(found)


def test_the_check_sees_a_machine_path():
    assert MACHINE_PATH.search("see /work/shared/notes/offline-models.md")
    assert MACHINE_PATH.search("(`/tmp/x`)")
    assert not MACHINE_PATH.search("bench/results/speed.json and docs/tmp/notes")
