"""Run directories: one trainer at a time, no run replaced by accident, writes that survive crashes."""

from __future__ import annotations

import errno
import json

import pytest

from loraqa.atomic import atomic_directory, write_json_atomic
from loraqa.config.loader import load_config
from loraqa.errors import RunDirError
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


# --- the lock: a real holder, links, and refusals that change nothing --------------------------

HOLDER = """
import sys, time
from loraqa.config.loader import load_config
from loraqa.runs.rundir import RunDirectory
run = RunDirectory(sys.argv[1])
run.open_for_training(load_config(None, ["output_dir=" + sys.argv[1]]), resume=False, overwrite=False)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_lock_holder_killed_by_sigkill_frees_the_run(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        config = load_config(None, [f"output_dir={path}"])
        with pytest.raises(RunDirError, match=f"in use by a running loraqa process \\(pid {holder.pid}\\)"):
            RunDirectory(path).open_for_training(config, resume=True, overwrite=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    again = RunDirectory(path)  # the kernel dropped the dead holder's lock
    again.open_for_training(config, resume=True, overwrite=False)
    again.release()


@pytest.mark.parametrize("dangling", [True, False])
def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path, dangling):
    run, target = tmp_path / "run", tmp_path / "victim.txt"
    run.mkdir()
    if not dangling:
        target.write_text("precious")
    (run / ".lock").symlink_to(target)
    config = load_config(None, [f"output_dir={run}"])
    with pytest.raises(RunDirError, match=r"\.lock is a symbolic link"):
        RunDirectory(run).open_for_training(config, resume=False, overwrite=False)
    assert (target.read_text() == "precious") if not dangling else not target.exists()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # no config written either


def test_a_refused_resume_leaves_the_lock_file_untouched(tmp_path):
    import os

    config = load_config(None, [f"output_dir={tmp_path}"])
    first = RunDirectory(tmp_path)
    first.open_for_training(config, resume=False, overwrite=False)
    first.release()
    lock = tmp_path / ".lock"
    lock.write_text("4242")
    os.utime(lock, (1_000_000, 1_000_000))
    changed = load_config(None, [f"output_dir={tmp_path}", "lora.r=4"])
    with pytest.raises(RunDirError, match="'lora.r' changed"):
        RunDirectory(tmp_path).open_for_training(changed, resume=True, overwrite=False)
    assert lock.read_text() == "4242" and lock.stat().st_mtime == 1_000_000
    # and a refused resume of nothing creates nothing
    with pytest.raises(RunDirError, match="no run to resume"):
        RunDirectory(tmp_path / "none").open_for_training(config, resume=True, overwrite=False)
    assert not (tmp_path / "none").exists()


# --- leftovers of interrupted saves --------------------------------------------------------------


def test_leftovers_of_interrupted_saves_are_cleared_when_the_run_is_opened(tmp_path):
    config = load_config(None, [f"output_dir={tmp_path}"])
    run = RunDirectory(tmp_path)
    run.open_for_training(config, resume=False, overwrite=False)
    run.release()
    (tmp_path / ".adapter.tmp-k3j_x9ab" / "sub").mkdir(parents=True)  # atomic_directory, killed
    (tmp_path / ".summary.json.ab12cd34.tmp").write_text("{")  # write_text_atomic, killed
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / ".metrics.json.zz12cd34.tmp").write_text("{")
    (tmp_path / "checkpoints" / ".staging" / "checkpoint-3").mkdir(parents=True)
    # killed between replace_directory's two renames: the complete old copy is only aside
    (tmp_path / "checkpoints" / ".checkpoint-2.old-q1w2e3r4" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "checkpoints" / ".checkpoint-2.old-q1w2e3r4" / "checkpoint-2" / "optimizer.pt").write_text("o")
    (tmp_path / ".notes.tmp-mine").mkdir()  # not a name loraqa writes: left alone
    (tmp_path / "notes.txt").write_text("mine")

    again = RunDirectory(tmp_path)
    again.open_for_training(config, resume=True, overwrite=False)
    again.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock",
        ".notes.tmp-mine",
        "baseline",
        "checkpoints",
        "config.yaml",
        "notes.txt",
    ]
    assert list((tmp_path / "baseline").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert (tmp_path / "checkpoints" / "checkpoint-2" / "optimizer.pt").read_text() == "o"
