"""Shared pieces of the sweep tests: cheap trial overrides, real worker processes, study checks."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import optuna
from kill_helpers import start_loraqa
from optuna.trial import TrialState
from run_helpers import tiny_overrides


def cheap_overrides(model_dir: Path, files: dict, tmp: Path, *extra: str) -> list[str]:
    """One optimiser step, two validation and two test questions, no baseline: a trial in ~1 s."""
    return tiny_overrides(
        model_dir,
        files,
        tmp / "unused",
        "training.max_steps=1",
        "data.validation_samples=2",
        "data.test_samples=2",
        "evaluation.baseline=false",
        "evaluation.with_loss=false",
        *extra,
    )


def sweep_command(config_overrides: list[str], sweep_dir: Path, name: str, *options: str) -> list[str]:
    return ["sweep", *config_overrides, "--name", name, "--dir", str(sweep_dir), *options]


def start_worker(
    argv: list[str], log: Path, *, sigint=signal.SIG_DFL, hang_at: str | None = None, markers: Path | None = None
) -> subprocess.Popen:
    """`loraqa ARGV` as a real process (kill_helpers.start_loraqa: SIGINT as `sigint` says, stopped
    at `hang_at` in every worker when given)."""
    return start_loraqa(argv, log, hang_at, markers, sigint=sigint)


def completed_per_cell(storage: str, name: str) -> tuple[Counter, list]:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    done = Counter(t.user_attrs["cell"] for t in trials if t.state == TrialState.COMPLETE)
    return done, trials
