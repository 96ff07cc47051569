"""`loraqa sweep` end to end on a tiny model: every cell exactly once, with several workers, after
the whole command is SIGKILLed mid-trial, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from kill_helpers import kill, wait_until_stopped
from optuna.trial import TrialState
from run_helpers import tiny_overrides
from sweep_helpers import cheap_overrides, completed_per_cell, start_worker, sweep_command

from loraqa.cli import main

# Seed 001's 5 x 5 x 3 grid; its ranks (4-64) halved, since the tiny model is 32 wide and a rank above
# what every adapted layer can use is refused before training (lora/rank.py).
SEED_GRID = [
    "lora.r=2,4,8,16,32",
    "training.learning_rate=7e-5,1e-4,2e-4,5e-4,1e-3",
    "lora.target_modules=attention,attention_mlp,qv",
]


def test_seed_grid_of_75_cells_runs_each_cell_once_with_two_workers(tiny_model_dir, qa_files, tmp_path, capsys):
    sweep_dir = tmp_path / "grid75"
    args = sweep_command(
        cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path),
        sweep_dir,
        "grid75",
        "--grid",
        *SEED_GRID,
        "--workers",
        "2",
    )
    assert main(args) == 0
    out = capsys.readouterr().out

    done, trials = completed_per_cell(f"sqlite:///{sweep_dir / 'study.db'}", "grid75")
    assert len(trials) == 75 and len(done) == 75 and set(done.values()) == {1}
    run_dirs = {Path(t.user_attrs["run_dir"]) for t in trials}
    assert len(run_dirs) == 75 and all((d / "adapter").is_dir() and (d / "summary.json").is_file() for d in run_dirs)
    trained = {p for p in sweep_dir.iterdir() if p.is_dir() and p.name != "report_files"}  # the report's figures
    assert trained == run_dirs  # nothing trained twice, nothing stray
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["trials"] == {"COMPLETE": 75} and len(summary["configurations"]) == 75
    assert f"best run directory: {summary['best']['best_run_dir']}" in out


def test_two_worker_processes_share_one_study_and_train_each_cell_once(storage, tiny_model_dir, qa_files, tmp_path):
    url, options, name = storage
    overrides = cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path)
    argv = sweep_command(
        overrides, tmp_path / "sweep", name, "--grid", "lora.r=2,4,8", "training.learning_rate=1e-4,1e-3", *options
    )
    workers = [start_worker(argv, tmp_path / f"worker{i}.log") for i in range(2)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0], [
        (tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2)
    ]

    done, trials = completed_per_cell(url, name)
    assert len(trials) == 6 and len(done) == 6 and set(done.values()) == {1}
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert all("COMPLETE" in log for log in logs), "both workers should have trained some cells"


def test_a_killed_sweep_retries_each_trial_once_from_its_checkpoint_and_ends_as_if_never_killed(
    storage, tiny_model_dir, qa_files, tmp_path
):
    """`loraqa sweep --workers 2` killed with kill -9 (the command and both workers) while each worker
    is mid-trial, its baseline measured and checkpoint-2 saved: the same command retries each trial
    once, when its heartbeat goes stale, resumed from that checkpoint, and every cell ends with the
    adapter bytes, metrics and validation score of a sweep that was never interrupted."""
    url, options, name = storage
    # The shipped defaults (baseline on, validation loss measured), a few steps and questions.
    overrides = tiny_overrides(
        tiny_model_dir("bert"),
        qa_files,
        tmp_path / "unused",
        "training.max_steps=6",
        "training.save_steps=2",
        "training.save_total_limit=null",
        "data.validation_samples=2",
        "data.test_samples=2",
    )
    grid = ["--grid", "lora.r=2,4", "--workers", "2", "--heartbeat", "1", "--grace", "4"]
    # Uninterrupted, into its own directory (SQLite: its own file; PostgreSQL: another study, same server).
    assert main(sweep_command(overrides, tmp_path / "reference", f"{name}-ref", *grid, *options)) == 0
    argv = sweep_command(overrides, tmp_path / "sweep", name, *grid, *options)
    log, stopped = tmp_path / "first.log", tmp_path / "stopped"
    first = start_worker(argv, log, hang_at="step:3", markers=stopped)  # checkpoint-2 saved, step 4 not
    wait_until_stopped(first, stopped, log, count=2)  # each worker inside its own trial
    kill(first, signal.SIGKILL)

    second = start_worker(argv, tmp_path / "second.log")
    assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()[-3000:]

    done, trials = completed_per_cell(url, name)
    assert done == {"lora.r=2 seed=42": 1, "lora.r=4 seed=42": 1}  # each cell exactly once
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 2 and len(trials) == 4  # the dead workers' trials, noticed through their heartbeats
    reference_url = url if options else f"sqlite:///{tmp_path / 'reference' / 'study.db'}"
    _, reference = completed_per_cell(reference_url, f"{name}-ref")
    expected = {t.user_attrs["cell"]: t for t in reference}
    for dead in killed:
        cell = dead.user_attrs["cell"]
        retry = next(t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["cell"] == cell)
        assert retry.system_attrs["failed_trial"] == dead.number
        assert Path(retry.user_attrs["resumed_from"]).name == "checkpoint-2"
        assert retry.value == expected[cell].value
        resumed, straight = Path(retry.user_attrs["run_dir"]), Path(expected[cell].user_attrs["run_dir"])
        for name_ in ("adapter_model.safetensors", "adapter_config.json"):
            assert (resumed / "adapter" / name_).read_bytes() == (straight / "adapter" / name_).read_bytes()
        for record in ("metrics.json", "baseline/metrics.json"):
            assert _scores(resumed / record) == _scores(straight / record)
    assert f"resuming from {tmp_path / 'sweep'}" in (tmp_path / "second.log").read_text()


def _scores(path: Path) -> dict:
    return {
        k: v for k, v in json.loads(path.read_text()).items() if k not in ("seconds", "questions_per_second", "adapter")
    }
