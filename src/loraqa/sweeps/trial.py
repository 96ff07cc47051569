"""One trial: the ordinary training pipeline with the sweep's config plus the trial's cell.

The run directory is named after the cell, so a retry of a trial whose worker died finds the
dead worker's run there and resumes it from its last complete checkpoint. Nothing here touches
the study's storage except through the pruning reporter (Optuna's `trial.report`).

Each trial records, where `loraqa train` records its command (summary.json "command", an argv
list), the `loraqa train` command that retrains the same configuration as an ordinary run into a
new directory beside the sweep's (`reproduce_command`); its shell form goes to the trial's attrs.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from transformers import TrainerCallback

from loraqa.atomic import write_json_atomic
from loraqa.config.loader import load_config
from loraqa.errors import LoraqaError, TrainingError
from loraqa.pipeline import run_training
from loraqa.runs.files import CONFIG_FILE, METRICS_FILE, TRIAL_FILE
from loraqa.runs.rundir import RunDirectory
from loraqa.runs.summary import RunSummary, read_summary
from loraqa.training.arguments import examples_per_step
from loraqa.training.trainer import last_complete_checkpoint


@dataclass
class TrialOutcome:
    state: TrialState
    value: float | None = None
    attrs: dict = field(default_factory=dict)


class PruningReporter(TrainerCallback):
    """Reports the validation metric at each evaluation; stops training when the pruner says so.

    Every evaluation is reported, but none in the first `warmup` share of the trial's steps can
    stop it: that early the learning rate has barely warmed up and validation scores are mostly
    noise (as Optuna's n_warmup_steps and Ray Tune's grace period; docs/performance.md has the
    bench where an unguarded median pruner stopped, at its first evaluation, the cell that ended
    best). The share is of the trial's own steps, so trials of different lengths are judged alike.

    Each value is reported at the number of training examples seen (steps x examples per step), not
    at the step: pruners compare trials at equal keys, and a grid over the batch size (or gradient
    accumulation) would otherwise judge a batch-4 trial after a quarter of the data a batch-16 trial
    had seen at the same step. The key is the trial's own throughout, so a resumed trial's inherited
    values line up with its new ones."""

    def __init__(self, trial: optuna.Trial, metric: str, warmup: float):
        self.trial = trial
        self.key = metric if metric.startswith("eval_") else f"eval_{metric}"
        self.warmup = warmup
        self.pruned_at: int | None = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.key)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, state.global_step * examples_per_step(args))
        if state.global_step <= self.warmup * state.max_steps:
            return
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            control.should_training_stop = True


def run_trial(
    config_path: str | None,
    overrides: list[str],
    trial: optuna.Trial,
    run_dir: Path,
    metric: str,
    prune_warmup: float | None,
) -> TrialOutcome:
    """Train the trial's cell into run_dir; any error becomes a FAIL outcome naming it.

    The outcome is also written to run_dir/sweep_trial.json when the run got a directory, so the
    run says by itself that it was pruned (its adapter is then a partly trained one) or failed.
    prune_warmup None: the sweep does not prune; else the share of steps no pruner may stop."""
    outcome = _train_cell(config_path, overrides, trial, run_dir, metric, prune_warmup)
    if run_dir.is_dir():
        record = {
            "trial": trial.number,
            "cell": trial.user_attrs.get("cell"),
            "state": outcome.state.name,
            f"validation_{metric}": outcome.value,
            **outcome.attrs,
        }
        write_json_atomic(run_dir / TRIAL_FILE, record)
    return outcome


def _train_cell(
    config_path: str | None,
    overrides: list[str],
    trial: optuna.Trial,
    run_dir: Path,
    metric: str,
    prune_warmup: float | None,
) -> TrialOutcome:
    attrs: dict = {"run_dir": str(run_dir)}
    try:
        run = RunDirectory(run_dir)
        cell_overrides = [*overrides, *trial.user_attrs["overrides"]]
        if run.holds_run():  # a resumed run keeps its thread count, whatever --workers is now
            cell_overrides.append(f"training.torch_threads={_saved_threads(run)}")
        command = reproduce_command(config_path, cell_overrides, rerun_dir(run_dir))
        attrs["command"] = shlex.join(command)
        config = load_config(config_path, [*cell_overrides, f"output_dir={run_dir}"])
        reporter = None if prune_warmup is None else PruningReporter(trial, metric, prune_warmup)
        summary = read_summary(run_dir)  # trained to the end, but its worker died before recording it
        if summary is None:
            resume = run.holds_run()
            if resume:
                attrs["resumed_from"] = last_complete_checkpoint(str(run.checkpoints))
            donor = None if resume else baseline_donor(config, run_dir)
            if donor is not None:
                attrs["baseline_from"] = str(donor)
            summary = RunSummary.from_dict(
                run_training(
                    config,
                    resume=resume,
                    callbacks=[reporter] if reporter else [],
                    validation=True,
                    command=command,
                    baseline_from=donor,
                )
            )
        validation, test = summary.validation, summary.adapter
        attrs.update(
            validation=validation,
            test=test,
            train_seconds=summary.train_seconds,
            trainable_params=summary.trainable_params,
        )
        if not validation or metric not in validation:
            raise TrainingError(f"the run recorded no validation {metric} (is data.validation_samples > 0?)")
        value = float(validation[metric])
        if not math.isfinite(value):
            raise TrainingError(f"validation {metric} is {value}")
        if reporter and reporter.pruned_at is not None:
            attrs["pruned_at_step"] = reporter.pruned_at
            return TrialOutcome(TrialState.PRUNED, value, attrs)
        return TrialOutcome(TrialState.COMPLETE, value, attrs)
    except LoraqaError as exc:
        attrs["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - OOM, a library error: the sweep records it and goes on
        attrs["error"] = f"{type(exc).__name__}: {exc}"
        attrs["traceback"] = traceback.format_exc(limit=8)
    return TrialOutcome(TrialState.FAIL, None, attrs)


def reproduce_command(config_path: str | None, overrides: list[str], output_dir: Path) -> list[str]:
    """The `loraqa train` argv that trains what a trial trained, as an ordinary run in output_dir.

    The sweep's CONFIG, its shared overrides and the trial's (its parameter values, its seed, the
    torch threads it ran on: CPU float sums depend on them), then output_dir. `--validation`: the
    trial carved a validation split even if training read none, and without it train would keep
    those questions. Earlier output_dir overrides are left out: they never applied to the trial,
    whose directory the sweep chose. A pruned trial's command trains to the end."""
    kept = [o for o in overrides if o.partition("=")[0].strip() != "output_dir"]
    return [
        "loraqa",
        "train",
        *([config_path] if config_path else []),
        *kept,
        f"output_dir={output_dir}",
        "--validation",
    ]


def rerun_dir(run_dir: Path) -> Path:
    """SWEEP-rerun/CELL beside SWEEP: outside the sweep directory, whose every child the sweep's
    report reads as a trial, and never the trial's own directory."""
    sweep_dir = run_dir.parent if run_dir.parent.name else run_dir.parent.resolve()
    return sweep_dir.with_name(f"{sweep_dir.name}-rerun") / run_dir.name


def _saved_threads(run: RunDirectory):
    saved = yaml.safe_load((run.path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    threads = (saved.get("training") or {}).get("torch_threads")
    return "null" if threads is None else threads


# What a baseline (the base model alone on the test split) depends on, beyond the model, data,
# evaluation and generation settings: the seed (the extractive head's initialisation, sampled
# decodings), numerics (precision, device, CPU threads) and LoRA settings that change the base
# itself. Everything else a sweep varies (rank, learning rate, steps, modules...) only trains.
_BASELINE_TRAINING_KEYS = ("seed", "precision", "device", "torch_threads")
_BASELINE_LORA_KEYS = ("init", "quantize_base")


def baseline_view(config) -> dict:
    """The settings a run's baseline depends on (two runs that agree on them measure the same baseline)."""
    view = dataclasses.asdict(config)
    for key in ("name", "output_dir"):
        view.pop(key)
    view["training"] = {key: view["training"][key] for key in _BASELINE_TRAINING_KEYS}
    view["lora"] = {key: view["lora"][key] for key in _BASELINE_LORA_KEYS}
    return view


def baseline_donor(config, run_dir: Path) -> Path | None:
    """An earlier trial's measured `baseline/` in this sweep with the same `baseline_view`: once per
    sweep is enough. Read from the sweep directory, so every worker finds what any other measured."""
    if not config.evaluation.baseline or not run_dir.parent.is_dir():
        return None
    wanted = baseline_view(config)
    for sibling in sorted(run_dir.parent.iterdir()):
        measured = RunDirectory(sibling).baseline
        if sibling == run_dir or not (measured / METRICS_FILE).is_file() or not (sibling / CONFIG_FILE).is_file():
            continue
        try:
            other = load_config(str(sibling / CONFIG_FILE), [])
        except LoraqaError:
            continue
        if baseline_view(other) == wanted:
            return measured
    return None
