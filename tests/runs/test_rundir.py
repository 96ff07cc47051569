"""Run directories: one trainer at a time, no run replaced by accident, writes that survive crashes."""

from __future__ import annotations

import errno
import json

import pytest

from loraqa.config.loader import load_config
from loraqa.errors import RunDirError
from loraqa.runs.atomic import atomic_directory, write_json_atomic
from loraqa.runs.rundir import RunDirectory


def test_second_training_into_the_same_directory_refuses(tmp_path):
    config = load_config(None, [f"output_dir={tmp_path / 'run'}"])
    first = RunDirectory(tmp_path / "run")
    first.open_for_training(config, resume=False, overwrite=False)
    try:
        with pytest.raises(RunDirError, match="in use by a running loraqa process"):
            RunDirectory(tmp_path / "run").open_for_training(config, resume=True, overwrite=False)
    finally:
        first.release()
    # released (as the kernel does when a process dies): the run can be resumed
    again = RunDirectory(tmp_path / "run")
    again.open_for_training(config, resume=True, overwrite=False)
    again.release()


def test_overwrite_clears_only_run_files(tmp_path):
    config = load_config(None, [f"output_dir={tmp_path}"])
    (tmp_path / "config.yaml").write_text("name: old\n")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDirectory(tmp_path).open_for_training(config, resume=False, overwrite=False)
    assert (tmp_path / "adapter").exists()
    run = RunDirectory(tmp_path)
    run.open_for_training(config, resume=False, overwrite=True)
    run.release()
    assert not (tmp_path / "adapter").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_directory_write_keeps_the_previous_copy(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(OSError):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (target / "weights").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_json_is_replaced_whole(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": 1})
    write_json_atomic(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
