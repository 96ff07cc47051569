"""Ctrl-C during training names the last checkpoint kept and the exact command that continues from it,
and that command, run as printed, finishes the run."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys

from kill_helpers import kill, start_loraqa, wait_until_stopped
from run_helpers import tiny_overrides


def test_ctrl_c_names_the_checkpoint_and_the_resume_command(tiny_model_dir, qa_files, tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        "minilm-l6-squad",
        *tiny_overrides(tiny_model_dir("bert"), qa_files, out),
        "training.max_steps=5",
        "training.save_strategy=steps",
        "training.save_steps=1",
        "--no-report",
    ]
    log = tmp_path / "log.txt"
    process = start_loraqa(argv, log, hang_at="step:3", markers=tmp_path / "markers")
    wait_until_stopped(process, tmp_path / "markers", log)
    kill(process, signal.SIGINT)
    assert process.returncode == 130
    lines = log.read_text().splitlines()
    assert lines.index("loraqa: interrupted") == len(lines) - 3, lines[-5:]
    assert lines[-2] == f"loraqa: last checkpoint kept: {out / 'checkpoints' / 'checkpoint-3'}"
    resume = lines[-1].removeprefix("loraqa: continue from it with: ")
    assert shlex.split(resume) == ["loraqa", *argv, "--resume"]
    done = subprocess.run(
        [sys.executable, "-m", "loraqa", *shlex.split(resume)[1:]], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "summary.json").is_file()
