"""Shared pieces of the sweep tests: cheap trial overrides, real worker processes, study checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from run_helpers import tiny_overrides

SRC = str(Path(__file__).resolve().parents[2] / "src")


def cheap_overrides(model_dir: Path, files: dict, tmp: Path, *extra: str) -> list[str]:
    """One optimiser step, two validation and two test questions, no baseline: a trial in ~1 s."""
    return tiny_overrides(
        model_dir, files, tmp / "unused", "training.max_steps=1", "data.validation_samples=2",
        "data.test_samples=2", "evaluation.baseline=false", "evaluation.with_loss=false", *extra,
    )  # fmt: skip


def sweep_command(config_overrides: list[str], sweep_dir: Path, name: str, *options: str) -> list[str]:
    return ["sweep", *config_overrides, "--name", name, "--dir", str(sweep_dir), *options]


def start_worker(argv: list[str], log: Path, *, sigint=signal.SIG_DFL) -> subprocess.Popen:
    """`loraqa ARGV` as a real process. Its SIGINT disposition is set (`sigint`), not inherited: a
    suite started in the background (`cmd &` in a script, nohup) ignores SIGINT, and so would every
    child; `signal.SIG_IGN` starts it the way `nohup loraqa sweep ... &` does."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "loraqa", *argv], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))  # fmt: skip


def completed_per_cell(storage: str, name: str) -> tuple[Counter, list]:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    done = Counter(t.user_attrs["cell"] for t in trials if t.state == TrialState.COMPLETE)
    return done, trials
