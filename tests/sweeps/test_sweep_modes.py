"""The sweep's other modes end to end on a tiny model: a TPE search, seeds, pruning, another
metric, and Ctrl-C followed by the same command."""

from __future__ import annotations

import json
import math
import signal
import statistics
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from kill_helpers import wait_until_stopped
from optuna.trial import TrialState
from sweep_helpers import cheap_overrides, completed_per_cell, start_worker, sweep_command
from transformers import TrainerControl, TrainerState

from loraqa.cli import main
from loraqa.sweeps.trial import PruningReporter


def _study(sweep_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'study.db'}")


def test_tpe_search_samples_the_space_for_the_trials_asked(tiny_model_dir, qa_files, tmp_path):
    sweep_dir = tmp_path / "tpe"
    args = sweep_command(
        cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path),
        sweep_dir,
        "tpe",
        "--search",
        "tpe",
        "--trials",
        "3",
        "--space",
        "training.learning_rate=loguniform(1e-4,1e-2)",
        "lora.r=choice(2,4)",
    )
    assert main(args) == 0
    trials = _study(sweep_dir, "tpe").get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        lr, r = t.params["training.learning_rate"], t.params["lora.r"]
        assert 1e-4 <= lr <= 1e-2 and r in (2, 4)
        run_dir = Path(t.user_attrs["run_dir"])
        saved = json.loads((run_dir / "summary.json").read_text())
        assert (run_dir / "adapter").is_dir() and run_dir.parent == sweep_dir
        config = (run_dir / "config.yaml").read_text()
        assert f"r: {r}\n" in config and math.isclose(_yaml_lr(config), lr)  # the run trained what was sampled
        assert saved["validation"]["f1"] == t.value
    assert main(args) == 0  # run again: the search is complete, nothing more is sampled
    assert len(_study(sweep_dir, "tpe").trials) == 3


def _yaml_lr(config_text: str) -> float:
    import yaml

    return float(yaml.safe_load(config_text)["training"]["learning_rate"])


def test_seeds_repeat_each_configuration_and_the_summary_gives_their_spread(tiny_model_dir, qa_files, tmp_path, capsys):
    sweep_dir = tmp_path / "seeds"
    # eval_loss: on a tiny random model F1 is 0 for every seed, the loss differs between seeds
    overrides = cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path, "evaluation.with_loss=true")
    args = sweep_command(overrides, sweep_dir, "seeds", "--grid", "lora.r=2,4", "--seeds", "2", "--metric", "eval_loss")
    assert main(args) == 0
    out = capsys.readouterr().out
    study = _study(sweep_dir, "seeds")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted((t.params["lora.r"], t.user_attrs["seed"]) for t in trials) == [(2, 42), (2, 43), (4, 42), (4, 43)]
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["direction"] == "minimize" and len(summary["configurations"]) == 2
    for config in summary["configurations"]:
        values = sorted(t.value for t in trials if t.user_attrs["config"] == config["config"])
        assert sorted(config["seeds"]) == [42, 43] and sorted(config["validation_values"]) == values
        assert values[0] != values[1]  # the seeds really trained differently
        assert config["validation_mean"] == pytest.approx(statistics.fmean(values))
        assert config["validation_std"] == pytest.approx(statistics.stdev(values))
        assert config["validation_range"] == pytest.approx(values[1] - values[0])
        assert len(config["run_dirs"]) == 2
    means = [c["validation_mean"] for c in summary["configurations"]]
    assert means == sorted(means)  # minimize: the lowest loss first, and it is the best
    assert summary["best"]["config"] == summary["configurations"][0]["config"]
    assert "validation eval_loss mean" in out and " std " in out and " range " in out


def test_metric_eval_loss_needs_the_loss_measured(tiny_model_dir, qa_files, tmp_path, capsys):
    args = sweep_command(
        cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path),
        tmp_path / "s",
        "noloss",
        "--grid",
        "lora.r=2",
        "--metric",
        "eval_loss",
    )
    assert main(args) == 2
    assert "evaluation.with_loss" in capsys.readouterr().err and not (tmp_path / "s").exists()


PRUNE_OVERRIDES = (
    "training.max_steps=6",
    "training.eval_strategy=steps",
    "training.eval_steps=2",
    "evaluation.with_loss=true",
)


def test_median_pruning_stops_the_trial_that_lags_and_the_sweep_goes_on(tiny_model_dir, qa_files, tmp_path, capsys):
    sweep_dir = tmp_path / "prune"
    overrides = cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path, *PRUNE_OVERRIDES)
    # Four learning rates that learn (the median pruner's startup trials), then one that cannot move
    # its loss at all, then one more that learns: only the frozen one lags the median.
    grid = ["training.learning_rate=5e-2,1e-1,2e-1,3e-1,1e-12,1.5e-1"]
    args = sweep_command(overrides, sweep_dir, "prune", "--grid", *grid, "--prune", "median", "--metric", "eval_loss")
    assert main(args) == 0
    out = capsys.readouterr().out
    trials = {t.params["training.learning_rate"]: t for t in _study(sweep_dir, "prune").trials}
    pruned = trials[1e-12]
    assert pruned.state == TrialState.PRUNED
    # The four startup trials are never pruned; the cell after the frozen one still runs to its own end
    # (complete, or pruned on its own merits: which depends on the tiny model's dynamics).
    assert {lr for lr, t in trials.items() if t.state == TrialState.COMPLETE} >= {5e-2, 1e-1, 2e-1, 3e-1}
    assert trials[1.5e-1].state in (TrialState.COMPLETE, TrialState.PRUNED)
    step = pruned.user_attrs["pruned_at_step"]
    # Stopped at that evaluation; each value is keyed by the examples seen (4 per step here), not the step.
    assert step < 6 and sorted(pruned.intermediate_values) == [4 * s for s in range(2, step + 1, 2)]
    run_dir = Path(pruned.user_attrs["run_dir"])
    record = json.loads((run_dir / "sweep_trial.json").read_text())
    assert record["state"] == "PRUNED" and record["pruned_at_step"] == step
    logged_steps = [json.loads(line).get("step", 0) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert max(logged_steps) == step  # training really stopped there
    last = trials[1.5e-1]
    assert json.loads((Path(last.user_attrs["run_dir"]) / "sweep_trial.json").read_text())["state"] == last.state.name
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert sum(summary["trials"].values()) == 6 and set(summary["trials"]) <= {"COMPLETE", "PRUNED"}
    assert {"trial": pruned.number, "cell": pruned.user_attrs["cell"], "step": step} in summary["pruned"]
    assert "pruned: " in out


class _AlwaysPrune:
    """An Optuna trial whose pruner always says stop: what PruningReporter lets through is its own rule."""

    def __init__(self):
        self.reported: list[int] = []

    def report(self, value, step):
        self.reported.append(step)

    def should_prune(self):
        return True


ONE_EXAMPLE_PER_STEP = SimpleNamespace(train_batch_size=1, gradient_accumulation_steps=1, world_size=1)


@pytest.mark.parametrize("warmup, stopped_at", [(0.0, 4), (0.25, 8), (0.5, 12)])
def test_no_pruner_stops_a_trial_in_its_warmup_share_of_steps_but_every_evaluation_is_reported(warmup, stopped_at):
    trial = _AlwaysPrune()
    reporter = PruningReporter(trial, "f1", warmup)
    for step in (4, 8, 12, 16):
        control = TrainerControl()
        state = TrainerState(global_step=step, max_steps=16)
        reporter.on_evaluate(ONE_EXAMPLE_PER_STEP, state, control, metrics={"eval_f1": 10.0})
        if control.should_training_stop:
            break
    assert reporter.pruned_at == stopped_at and trial.reported == [s for s in (4, 8, 12, 16) if s <= stopped_at]


def test_trials_of_other_batch_sizes_report_at_equal_examples_seen_so_pruners_compare_equal_data():
    """Batch 4 at step 8 and batch 16 (8 x 2 accumulated) at step 2 have both seen 32 examples."""
    reported = {}
    for batch, accumulation, steps in ((4, 1, (4, 8)), (8, 2, (1, 2))):
        trial = _AlwaysPrune()
        reporter = PruningReporter(trial, "f1", 0.99)  # never stops: only the keys are looked at
        args = SimpleNamespace(train_batch_size=batch, gradient_accumulation_steps=accumulation, world_size=1)
        for step in steps:
            reporter.on_evaluate(
                args, TrainerState(global_step=step, max_steps=10), TrainerControl(), metrics={"eval_f1": 1.0}
            )
        reported[batch] = trial.reported
    assert reported == {4: [16, 32], 8: [16, 32]}


def test_ctrl_c_gives_the_trial_back_and_the_same_command_finishes_the_rest_once(tiny_model_dir, qa_files, tmp_path):
    sweep_dir = tmp_path / "sweep"
    overrides = cheap_overrides(
        tiny_model_dir("bert"),
        qa_files,
        tmp_path,
        "training.max_steps=40",
        "training.save_steps=2",
        "training.save_total_limit=null",
    )
    argv = sweep_command(overrides, sweep_dir, "ctrlc", "--grid", "lora.r=2,4")
    # Stopped in its first trial, after checkpoint-2: the Ctrl-C lands mid-trial however slow the machine.
    worker = start_worker(argv, tmp_path / "first.log", hang_at="step:2", markers=tmp_path / "stopped")
    wait_until_stopped(worker, tmp_path / "stopped", tmp_path / "first.log")
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()[-2000:]
    log = (tmp_path / "first.log").read_text()
    assert "loraqa: interrupted" in log and "Traceback" not in log

    url = f"sqlite:///{sweep_dir / 'study.db'}"
    _, trials = completed_per_cell(url, "ctrlc")
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states  # not left for a heartbeat to notice
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 1 and "interrupted" in interrupted[0].user_attrs["error"]

    again = start_worker(argv, tmp_path / "second.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    done, trials = completed_per_cell(url, "ctrlc")
    assert done == {"lora.r=2 seed=42": 1, "lora.r=4 seed=42": 1}  # each cell exactly once
    retry = next(
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.user_attrs["cell"] == interrupted[0].user_attrs["cell"]
    )
    assert retry.system_attrs["failed_trial"] == interrupted[0].number and retry.user_attrs["resumed_from"]
    assert len(trials) == 3  # the interrupted trial, its retry, the other cell: nothing else was trained


def test_sigterm_to_the_command_stops_every_worker_and_gives_their_trials_back(tiny_model_dir, qa_files, tmp_path):
    sweep_dir = tmp_path / "sweep"
    overrides = cheap_overrides(
        tiny_model_dir("bert"), qa_files, tmp_path, "training.max_steps=40", "training.save_steps=2"
    )
    argv = sweep_command(overrides, sweep_dir, "term", "--grid", "lora.r=2,4", "--workers", "2")
    # Started as `nohup loraqa sweep ... &` starts it: SIGINT ignored, by the parent and its workers alike.
    # Each worker stops in its trial after checkpoint-2, so both trials are mid-training at the SIGTERM
    # (waiting for two checkpoints anywhere let one fast trial satisfy it alone, then finish: 1 != 2).
    parent = start_worker(
        argv, tmp_path / "term.log", sigint=signal.SIG_IGN, hang_at="step:2", markers=tmp_path / "stopped"
    )
    wait_until_stopped(parent, tmp_path / "stopped", tmp_path / "term.log", count=2)
    assert len({p.parents[1] for p in sweep_dir.glob("*/checkpoints/checkpoint-2")}) == 2
    workers = [int(pid) for pid in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()]
    assert len(workers) == 2
    parent.terminate()
    assert parent.wait(timeout=120) == 130, (tmp_path / "term.log").read_text()[-2000:]
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # no worker outlives the command
    _, trials = completed_per_cell(f"sqlite:///{sweep_dir / 'study.db'}", "term")
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.COMPLETE not in states
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 2 and all("interrupted" in t.user_attrs["error"] for t in interrupted)
