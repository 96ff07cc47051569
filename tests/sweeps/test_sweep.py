"""`loraqa sweep` end to end on a tiny model: every cell exactly once, with several workers, after
a worker is SIGKILLed, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from loraqa.cli import main
from sweep_helpers import cheap_overrides, completed_per_cell, start_worker, sweep_command

SEED_GRID = ["lora.r=4,8,16,32,64", "training.learning_rate=7e-5,1e-4,2e-4,5e-4,1e-3",
             "lora.target_modules=attention,attention_mlp,qv"]  # fmt: skip


def test_seed_grid_of_75_cells_runs_each_cell_once_with_two_workers(tiny_model_dir, qa_files, tmp_path, capsys):
    sweep_dir = tmp_path / "grid75"
    args = sweep_command(cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path), sweep_dir, "grid75",
                         "--grid", *SEED_GRID, "--workers", "2")  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out

    done, trials = completed_per_cell(f"sqlite:///{sweep_dir / 'study.db'}", "grid75")
    assert len(trials) == 75 and len(done) == 75 and set(done.values()) == {1}
    run_dirs = {Path(t.user_attrs["run_dir"]) for t in trials}
    assert len(run_dirs) == 75 and all((d / "adapter").is_dir() and (d / "summary.json").is_file() for d in run_dirs)
    assert {p for p in sweep_dir.iterdir() if p.is_dir()} == run_dirs  # nothing trained twice, nothing stray
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["trials"] == {"COMPLETE": 75} and len(summary["configurations"]) == 75
    assert f"best run directory: {summary['best']['best_run_dir']}" in out


def test_two_worker_processes_share_one_study_and_train_each_cell_once(storage, tiny_model_dir, qa_files, tmp_path):
    url, options, name = storage
    overrides = cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path)
    argv = sweep_command(overrides, tmp_path / "sweep", name, "--grid", "lora.r=2,4,8", "training.learning_rate=1e-4,1e-3",
                         *options)  # fmt: skip
    workers = [start_worker(argv, tmp_path / f"worker{i}.log") for i in range(2)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0], [
        (tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2)
    ]

    done, trials = completed_per_cell(url, name)
    assert len(trials) == 6 and len(done) == 6 and set(done.values()) == {1}
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert all("COMPLETE" in log for log in logs), "both workers should have trained some cells"


def test_killed_worker_trial_is_retried_and_resumed_from_its_checkpoint(storage, tiny_model_dir, qa_files, tmp_path):
    url, options, name = storage
    overrides = cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path, "training.max_steps=10",
                                "training.save_steps=2", "training.save_total_limit=null")  # fmt: skip
    argv = sweep_command(overrides, tmp_path / "sweep", name, "--grid", "lora.r=2,4", "--heartbeat", "1",
                         "--grace", "4", *options)  # fmt: skip
    first = start_worker(argv, tmp_path / "first.log")
    checkpoint = _wait_for_checkpoint(tmp_path / "sweep", first)
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = start_worker(argv, tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]

    done, trials = completed_per_cell(url, name)
    assert len(done) == 2 and set(done.values()) == {1}
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1  # the dead worker's trial, noticed through its heartbeat
    retry = next(
        t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["cell"] == killed[0].user_attrs["cell"]
    )
    assert retry.system_attrs["failed_trial"] == killed[0].number
    resumed = retry.user_attrs["resumed_from"]
    assert resumed and int(resumed.rsplit("-", 1)[1]) >= int(checkpoint.name.rsplit("-", 1)[1]) > 0
    assert f"resuming from {resumed}" in (tmp_path / "second.log").read_text()


def _wait_for_checkpoint(sweep_dir: Path, process, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(sweep_dir.glob("*/checkpoints/checkpoint-*"))
        if found:
            return found[0]
        if process.poll() is not None:
            pytest.fail(f"worker exited ({process.returncode}) before writing a checkpoint")
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared")
