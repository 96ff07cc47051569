"""`loraqa train`: prepare -> baseline -> fit -> save -> evaluate -> finish, one phase a line."""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path

import torch

from loraqa import distributed
from loraqa.config.schema import RunConfig
from loraqa.console import say
from loraqa.device import release_device_memory
from loraqa.errors import RunDirError
from loraqa.inference.evaluate import format_table
from loraqa.inference.uncertainty import (
    describe_comparison,
    describe_weakest,
    paired_comparison,
    read_question_rows,
    slice_changes,
)
from loraqa.pipeline.evaluate_phase import baseline, evaluate
from loraqa.pipeline.fit_phase import fit
from loraqa.pipeline.prepare_phase import prepare
from loraqa.pipeline.record import finish, provenance
from loraqa.pipeline.save_phase import directory_bytes, save
from loraqa.runs.files import METRICS_FILE
from loraqa.runs.summary import RunSummary
from loraqa.runs.write_errors import write_failure
from loraqa.training.tracking import report_run


def run_training(
    config: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks=(),
    validation: bool | None = None,
    command: list[str] | None = None,
    baseline_from: Path | None = None,
) -> dict:
    """Train an adapter as configured; return the summary written to summary.json, as its JSON
    object (`RunSummary.to_dict()`; `loraqa.runs.summary.read_summary` reads it back typed).

    `callbacks`: extra transformers TrainerCallbacks (a sweep's pruning reporter). `validation`:
    True carves a validation split even when training does not read it (see `prepare`); the
    adapter's scores on it are summary["validation"]. `command`: the command line, recorded.
    `baseline_from`: an equivalent run's measured `baseline/` to reuse (see `evaluate_phase.baseline`).

    `training.torch_threads` holds for this run only: the caller's torch thread count is restored
    after it, so every run in a process (the Python API, `loraqa compare`, sweeps) trains on the
    count it would get alone, and its numbers match `loraqa train`'s to the last digit (CPU float
    sums depend on the thread count).

    The run's model, optimizer and trainer are released when it ends, raised or not, so a second run in
    the same process (compare, sweep trials) starts from the memory the first one did."""
    threads = torch.get_num_threads()
    try:
        return _run_training(
            config,
            resume=resume,
            overwrite=overwrite,
            callbacks=callbacks,
            validation=validation,
            command=command,
            baseline_from=baseline_from,
        )
    except BaseException as exc:
        traceback.clear_frames(exc.__traceback__)  # a failed run's frames would keep its model and trainer
        raise
    finally:
        torch.set_num_threads(threads)
        release_device_memory()  # the next run in this process starts from the memory this one did


def _run_training(
    config: RunConfig,
    *,
    resume: bool,
    overwrite: bool,
    callbacks,
    validation: bool | None,
    command: list[str] | None,
    baseline_from: Path | None,
) -> dict:
    prepared = prepare(config, resume=resume, overwrite=overwrite, validation=validation)
    run = prepared.run
    try:
        summary = RunSummary(run_dir=str(run.path), model=config.model.name, device=prepared.plan.description)
        summary.baseline = baseline(prepared, baseline_from)
        fitted = fit(prepared, callbacks)
        # peak_memory_* (training/memory.py says what they count) and best_model / early_stopping
        summary = replace(
            summary,
            train_loss=fitted.train_loss,
            train_seconds=fitted.train_seconds,
            divergence_warning=fitted.divergence_warning or None,
            **fitted.peak_memory,
            **fitted.selection,
        )
        adapter = save(prepared, fitted)
        evaluation = evaluate(prepared)
        summary.adapter = evaluation.test.metrics
        if summary.baseline is not None and distributed.is_main():  # [ddp] rank 0 wrote the baseline's rows
            # Paired on the same test questions; the baseline's rows may be an earlier process's (--resume).
            baseline_rows = read_question_rows(run.baseline) or []
            summary.adapter_vs_baseline = paired_comparison(evaluation.test.rows, baseline_rows)
            summary.slices_vs_baseline = slice_changes(evaluation.test.rows, baseline_rows)
        summary.validation = evaluation.validation  # what sweeps and comparisons choose on
        summary = replace(summary, **provenance(prepared, command), adapter_bytes=directory_bytes(adapter))
        if not distributed.is_main():  # [ddp] rank 0 writes and prints the results
            return summary.to_dict()
        finish(prepared, summary)
        # What happened outside Trainer, to the runs the tracking callbacks started.
        report_run(
            config,
            run.path,
            summary,
            step=fitted.global_step,
            parameters=(prepared.trainable_params, prepared.total_params),
        )
    except Exception as exc:
        failure = write_failure(exc, run.path)
        if failure is None:
            raise
        raise RunDirError(
            f"cannot write {failure.filename}: {failure.strerror}; completed checkpoints and any earlier "
            "adapter are intact (free space, then run again with --resume)"
        ) from None
    finally:
        run.release()
    _print_result(summary)
    return summary.to_dict()


def _print_result(summary: RunSummary) -> None:
    name = summary.model
    rows = [(f"{name} (no adapter)", summary.baseline)] if summary.baseline is not None else []
    rows.append((f"{name} + LoRA", summary.adapter))
    if summary.validation is not None:
        rows.append((f"{name} + LoRA [validation]", summary.validation))
    print(format_table(rows))
    if summary.adapter_vs_baseline:
        print(describe_comparison("+ LoRA", "no adapter", summary.adapter_vs_baseline))
    weakest = describe_weakest(summary.adapter.get("slices") or {}, summary.slices_vs_baseline)
    if weakest:
        print(f'weakest slices ({METRICS_FILE} "slices"; the report plots them all):', *weakest, sep="\n")
    peak = ""
    if summary.peak_memory_mib is not None:
        peak = f", peak memory {summary.peak_memory_mib:,.0f} MiB ({summary.peak_memory_kind})"
    print(
        f"run directory: {summary.run_dir}  (training {summary.train_seconds}s{peak}, total {summary.total_seconds}s)"
    )
    if summary.divergence_warning:
        say(f"warning: {summary.divergence_warning}")
