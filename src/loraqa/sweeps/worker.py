"""`loraqa sweep`: open the study, then claim -> train -> finish trials until none is left.

`--workers N` starts N copies of the same command as worker processes (torch threads split
between them); workers on other machines run the same command against the same `--storage`.
A worker with nothing to claim waits while other trials are RUNNING: if their worker dies, its
heartbeat goes stale and this worker picks up the retry (and resumes it from its checkpoint).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import optuna

from loraqa.atomic import write_json_atomic
from loraqa.errors import TrainingError
from loraqa.runs.files import SWEEP_FILE
from loraqa.sweeps import study as storage_ops
from loraqa.sweeps.space import grid_cells
from loraqa.sweeps.spec import METRICS, SweepSpec, check_spec
from loraqa.sweeps.summary import format_summary, summarize
from loraqa.sweeps.trial import run_trial


def run_sweep(spec: SweepSpec) -> dict | None:
    """Run (or finish) the sweep; the parent returns and prints the summary, a worker returns None."""
    axes, space, seeds = check_spec(spec)
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    url = spec.storage or storage_ops.default_storage(spec.sweep_dir)
    storage = storage_ops.open_storage(url, spec.heartbeat_interval, spec.grace_period or 3 * spec.heartbeat_interval)
    maximize = METRICS[spec.metric]
    definition = {
        "grid": spec.grid,
        "space": spec.space,
        "search": spec.search,
        "seeds": seeds,
        "metric": spec.metric,
        "trials": spec.trials,
    }
    study = storage_ops.open_study(
        storage,
        spec.name,
        "maximize" if maximize else "minimize",
        definition,
        grid_cells(axes, seeds) if axes else None,
        _sampler(spec),
        _pruner(spec.prune),
    )
    if spec.workers > 1 and not spec.worker:
        _run_workers(spec)
    else:
        with _terminate_as_interrupt():
            _work(spec, study, storage, axes, space, seeds)
    if spec.worker:
        return None
    summary = summarize(study, spec.metric, maximize, spec.select)
    summary["storage"] = url if spec.storage is None else "(given with --storage)"
    summary["unfinished"] = storage_ops.unfinished(study)
    write_json_atomic(spec.sweep_dir / SWEEP_FILE, summary)
    print(format_summary(summary))
    if summary["unfinished"]:
        print(f"{summary['unfinished']} trial(s) not finished: run the same command again to finish them")
    print(f"sweep summary: {spec.sweep_dir / SWEEP_FILE}")
    if not summary["trials"].get("COMPLETE"):  # a sweep that trained nothing usable did not succeed
        raise TrainingError(_nothing_completed(summary, spec.sweep_dir / SWEEP_FILE))
    return summary


def _nothing_completed(summary: dict, path: Path) -> str:
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["trials"].items())) or "no trials"
    failed = summary["failed"]
    first = f"; the first failure: {failed[0]['error'].splitlines()[0]}" if failed and failed[0]["error"] else ""
    return f"no trial of sweep {summary['study']} completed ({states}){first}; every trial is listed in {path}"


def _work(spec: SweepSpec, study: optuna.Study, storage, axes, space, seeds) -> None:
    overrides = list(spec.overrides)
    if spec.torch_threads and not any(o.startswith("training.torch_threads=") for o in overrides):
        overrides.append(f"training.torch_threads={spec.torch_threads}")
    while True:
        trial = storage_ops.claim(study, storage)
        if trial is None and spec.search and storage_ops.configurations_started(study) < spec.trials:
            trial = storage_ops.ask_new(study, space, seeds)
        if trial is None:
            if storage_ops.unfinished(study) == 0:
                return
            time.sleep(min(spec.heartbeat_interval, 5))  # others are training: wait in case one dies
            continue
        if axes:
            storage_ops.record_grid_params(trial, axes)
        else:  # a queued seed of a sampled configuration: its fixed values become its params too
            storage_ops.record_space_params(trial, space)
        run_dir = spec.sweep_dir / trial.user_attrs["dirname"]
        _say(f"trial {trial.number}: {trial.user_attrs['cell']} -> {run_dir}")
        try:
            with storage_ops.heartbeat(storage, trial):
                outcome = run_trial(
                    spec.config,
                    overrides,
                    trial,
                    run_dir,
                    spec.metric,
                    None if spec.prune == "none" else spec.prune_warmup,
                )
        except KeyboardInterrupt:
            storage_ops.give_back(study, trial)
            raise
        if not storage_ops.finish(study, trial, outcome.state, outcome.value, outcome.attrs):
            _say(f"trial {trial.number} was declared dead by another worker (heartbeat late); its retry stands")
        detail = outcome.attrs.get("error") or f"validation {spec.metric} {outcome.value}"
        _say(f"trial {trial.number} {outcome.state.name}: {detail}")


def _run_workers(spec: SweepSpec) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = spec.torch_threads or max(1, cores // spec.workers)
    command = [sys.executable, "-m", "loraqa", *spec.argv, "--worker", "--torch-threads", str(threads)]
    _say(f"starting {spec.workers} workers, {threads} torch thread(s) each")
    children = [subprocess.Popen(command) for _ in range(spec.workers)]

    def stop_workers() -> None:  # a SIGTERM reaches this process alone: pass it on to the workers
        for child in children:  # SIGTERM, not SIGINT: a sweep started with nohup or `&` ignores SIGINT
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    try:
        with _terminate_as_interrupt(stop_workers):
            codes = [child.wait() for child in children]
    except KeyboardInterrupt:  # the workers got the same Ctrl-C: let them give their trials back
        for child in children:
            child.wait()
        raise
    for code in codes:
        if code != 0:
            _say(f"a worker exited with status {code}")


@contextmanager
def _terminate_as_interrupt(before=None):
    """SIGTERM (`kill`, a job scheduler, systemd) ends a sweep as Ctrl-C does: each worker gives its
    trial back (it reruns at once, not after a heartbeat grace period) and no worker outlives the
    command. Signal handlers belong to the main thread; elsewhere the default stays."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        if before:
            before()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sampler(spec: SweepSpec):
    if spec.search == "random":
        return optuna.samplers.RandomSampler()
    return optuna.samplers.TPESampler()  # grid trials are fixed: the sampler never sees them


def _pruner(name: str):
    return {
        "none": optuna.pruners.NopPruner(),
        "median": optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
        "asha": optuna.pruners.SuccessiveHalvingPruner(),
    }[name]


def _say(message: str) -> None:
    print(f"loraqa sweep: {message}", file=sys.stderr, flush=True)
