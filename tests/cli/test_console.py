"""The console of a real `loraqa train` whose output is captured (not a terminal): loraqa's own lines,
one per logging step, and no Trainer dicts, carriage returns or escape codes."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from run_helpers import tiny_overrides

from loraqa.cli_parser import build_parser

STEP_LINE = re.compile(r"^loraqa: step (\d+)/6  loss [\d.]+  lr [\d.e+-]+  [\d.]+ examples/s  ETA \d+:\d\d:\d\d$")


def train(tiny_model_dir, qa_files, out, *flags: str) -> subprocess.CompletedProcess:
    argv = [
        "train",
        *tiny_overrides(tiny_model_dir("gpt2"), qa_files, out),
        "training.max_steps=6",
        "training.logging_steps=2",
        "--no-report",
        *flags,
    ]
    result = subprocess.run([sys.executable, "-m", "loraqa", *argv], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_captured_training_prints_one_clean_line_per_logging_step(tiny_model_dir, qa_files, tmp_path):
    result = train(tiny_model_dir, qa_files, tmp_path / "run")
    both = result.stdout + result.stderr
    assert "{'loss'" not in both and "{'train_runtime'" not in both, both
    assert "\x1b" not in both and "\r" not in both, repr(both[-2000:])  # no escape codes, no bar redraws
    steps = [int(m[1]) for line in result.stderr.splitlines() if (m := STEP_LINE.match(line))]
    assert steps == [2, 4, 6], result.stderr
    assert all(line.startswith("loraqa: ") for line in result.stderr.splitlines()), result.stderr


def test_quiet_keeps_results_and_warnings_only(tiny_model_dir, qa_files, tmp_path):
    result = train(tiny_model_dir, qa_files, tmp_path / "run", "--quiet")
    assert "+ LoRA" in result.stdout  # the results table
    assert all(line.startswith("loraqa: warning") for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize("command", sorted(build_parser()._subparsers._group_actions[0].choices))
def test_every_command_takes_quiet_and_verbose(command):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert {"--quiet", "--verbose"} <= flags


def test_the_python_api_shows_no_library_deprecation_warnings(tiny_model_dir, qa_files, tmp_path):
    out = tmp_path / "run"
    train(tiny_model_dir, qa_files, out)
    script = (
        "import loraqa, sys; qa = loraqa.load(sys.argv[1], device='cpu'); "
        "print(qa.answer('Who wrote it?', 'Ada wrote it in 1843.').text is not None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(out / "adapter")], capture_output=True, text=True, timeout=600
    )  # Python's default filters: FutureWarning shows
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr[-2000:]
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr, result.stderr[-2000:]
