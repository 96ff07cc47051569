"""What loraqa writes gets the user's umask, like any other tool's output (0644/0755 under umask 022).

safetensors writes its files 0600 (a private temporary renamed into place); an adapter, a merged
model or a checkpoint shared with colleagues must not need a chmod to be readable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from run_helpers import tiny_overrides

from loraqa.atomic import atomic_directory
from loraqa.cli import main


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(root: Path) -> dict[str, str]:
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def test_adapter_checkpoints_and_merged_model_are_0644_under_umask_022(umask_022, tiny_model_dir, qa_files, tmp_path):
    out = tmp_path / "run"
    args = tiny_overrides(tiny_model_dir("bert"), qa_files, out, "training.save_steps=2")
    assert main(["train", *args]) == 0
    assert main(["merge", "--adapter", str(out / "adapter"), "--output", str(tmp_path / "merged")]) == 0
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for root in (out / "adapter", tmp_path / "merged", *checkpoints):
        found = modes(root)
        assert any(name.endswith(".safetensors") for name in found), found
        wrong = {name: mode for name, mode in found.items() if mode != ("0o755" if (root / name).is_dir() else "0o644")}
        assert not wrong, f"{root}: {wrong}"


def test_a_private_file_written_into_an_atomic_directory_gets_the_umask(umask_022, tmp_path):
    with atomic_directory(tmp_path / "out") as staging:
        fd = os.open(staging / "weights", os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        (staging / "sub").mkdir(mode=0o700)
        (staging / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(staging / "run.sh", 0o700)
    assert modes(tmp_path / "out") == {".": "0o755", "weights": "0o644", "sub": "0o755", "run.sh": "0o755"}
