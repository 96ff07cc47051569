"""`loraqa train`: setup -> baseline -> fit -> save -> evaluate, reading top to bottom.

Everything that can fail on user input (config, data, run directory, device) is checked before the
model's weights are loaded; the baseline is the same base model on the same test questions.
"""

from __future__ import annotations

import errno
import json
import sys
import time
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, set_seed

from loraqa.config.schema import RunConfig
from loraqa.config.validate import needs_validation
from loraqa.data.prepare import RunData, load_run_data
from loraqa.evaluation.runner import evaluate_records, format_table, predict_settings, write_outcome
from loraqa.lora.adapter import adapted_layers, adapter_meta, attach_lora, parameter_counts, save_adapter
from loraqa.models.loading import inspect_base, load_model, load_tokenizer
from loraqa.runs.atomic import write_json_atomic, write_text_atomic
from loraqa.errors import DataError, RunDirError
from loraqa.runs.rundir import RunDirectory
from loraqa.training.arguments import training_arguments
from loraqa.training.device import plan_device
from loraqa.training.trainer import FeatureDataset, QATrainer, last_complete_checkpoint, shared_prompt_groups


def say(message: str) -> None:
    print(f"loraqa: {message}", file=sys.stderr, flush=True)


def run_training(config: RunConfig, *, resume: bool = False, overwrite: bool = False, callbacks=()) -> dict:
    """Train an adapter as configured; return the summary that is also written to summary.json.

    `callbacks`: extra transformers TrainerCallbacks (a sweep's pruning reporter)."""
    started = time.perf_counter()
    # Input checks first: a run that fails on bad data or a bad model name leaves no run directory behind.
    data = load_run_data(config.data, validation=needs_validation(config))
    spec = inspect_base(config.model)
    plan = plan_device(config.training.device, config.training.precision, spec.model_type)
    adapted_layers(config.lora.layers_to_transform, spec.hf_config)  # a missing layer fails before any weights load
    run = RunDirectory(config.run_dir)
    run.open_for_training(config, resume=resume, overwrite=overwrite)
    try:
        return _train(config, run, resume, data, spec, plan, started, list(callbacks))
    except OSError as exc:
        if exc.errno not in _WRITE_ERRORS:
            raise
        raise RunDirError(
            f"cannot write {exc.filename or run.path}: {exc.strerror}; completed checkpoints and any earlier "
            "adapter are intact (free space, then run again with --resume)"
        ) from None
    finally:
        run.release()


_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}


def _train(config: RunConfig, run: RunDirectory, resume: bool, data: RunData, spec, plan, started: float,
           callbacks: list) -> dict:
    if config.training.torch_threads:
        torch.set_num_threads(config.training.torch_threads)
    say(f"run directory {run.path}")
    say(f"model {config.model.name} ({spec.model_type}, {spec.formulation.name}) on {plan.description}")
    say(f"data: {len(data.train)} train, {len(data.validation)} validation, {len(data.test)} test questions")

    set_seed(config.training.seed)  # also fixes the freshly initialised QA head
    tokenizer = load_tokenizer(spec, config.model)
    model = load_model(spec, config.model, tokenizer, plan.torch_device)
    settings = predict_settings(config, data.version_2)

    summary: dict = {"run_dir": str(run.path), "model": config.model.name, "device": plan.description}
    if config.evaluation.baseline:
        summary["baseline"] = _baseline(config, run, spec, model, tokenizer, data, settings)

    if config.training.gradient_checkpointing:
        model.enable_input_require_grads()  # LoRA-only grads need a grad path through frozen inputs
    new_tokens = tokenizer.convert_tokens_to_ids(config.model.add_tokens) if config.model.add_tokens else None
    peft_model = attach_lora(model, config.lora, spec.formulation, spec.model_type, new_tokens)
    trainable, total = parameter_counts(peft_model)
    say(f"trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")

    trainer = _trainer(config, run, spec, peft_model, tokenizer, data, settings, plan, callbacks)
    checkpoint = last_complete_checkpoint(str(run.checkpoints)) if resume else None
    if resume:
        say(f"resuming from {checkpoint}" if checkpoint else "no checkpoint yet: training from the start")
    fit_started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    summary["train_seconds"] = round(time.perf_counter() - fit_started, 1)
    summary["train_loss"] = train_output.training_loss
    _write_log(run, trainer)
    summary.update(_model_selection(config, trainer))

    meta = adapter_meta(config.model, spec.formulation.name, spec.hf_config, tokenizer, peft_model, version_2=data.version_2)
    save_adapter(peft_model, tokenizer, run.adapter, meta)
    say(f"adapter saved to {run.adapter}")

    model_for_eval = peft_model.merge_and_unload()  # same answers as unmerged, faster to run
    outcome = evaluate_records(spec.formulation, model_for_eval, tokenizer, data.test, settings, label="adapter")
    write_outcome(outcome, run.path, extra={"model": config.model.name, "adapter": str(run.adapter)})
    summary["adapter"] = outcome.metrics
    # --- final validation evaluation: what sweeps and comparisons choose on (never the test set) ---
    if data.validation:
        summary["validation"] = evaluate_records(
            spec.formulation, model_for_eval, tokenizer, data.validation, settings, label="validation"
        ).metrics
    # --- end of final validation evaluation ---
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(run.path / "summary.json", summary)

    rows = [(f"{config.model.name} (no adapter)", summary["baseline"])] if "baseline" in summary else []
    rows.append((f"{config.model.name} + LoRA", outcome.metrics))
    print(format_table(rows))
    print(f"run directory: {run.path}  (training {summary['train_seconds']}s, total {summary['total_seconds']}s)")
    return summary


def _baseline(config, run, spec, model, tokenizer, data: RunData, settings) -> dict:
    saved = run.baseline / "metrics.json"
    if saved.exists():  # a resumed run already measured it on the same questions
        return json.loads(saved.read_text(encoding="utf-8"))
    say("evaluating the base model without adapter (baseline)")
    outcome = evaluate_records(spec.formulation, model, tokenizer, data.test, settings, label="baseline")
    write_outcome(outcome, run.baseline, extra={"model": config.model.name, "adapter": None})
    return outcome.metrics


def _trainer(config, run, spec, peft_model, tokenizer, data: RunData, settings, plan, callbacks) -> QATrainer:
    formulation = spec.formulation
    features = formulation.training_features(data.train, tokenizer)
    if not features:
        raise DataError(config.data.train, "no training examples left after sampling")

    def evaluate_validation(model) -> dict:
        return evaluate_records(formulation, model, tokenizer, data.validation, settings, label="validation").metrics

    evaluator = evaluate_validation if config.training.eval_strategy != "no" else None

    if config.training.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(config.training.early_stopping_patience, config.training.early_stopping_threshold)
        )
    return QATrainer(
        model=peft_model,
        args=training_arguments(config, plan, str(run.checkpoints), formulation.label_names),
        train_dataset=FeatureDataset(features, _prompt_groups(config, formulation, peft_model, features)),
        eval_dataset=FeatureDataset(features[:1]) if evaluator else None,  # unused: QA evaluation runs instead
        data_collator=lambda batch: formulation.collate(batch, tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        formulation=formulation,
        qa_evaluator=evaluator,
        nan_hint=_nan_hint(config, spec.model_type),
    )


def _prompt_groups(config: RunConfig, formulation, model, features) -> list[list[int]] | None:
    groups = shared_prompt_groups(config.training, formulation, model, features)
    if groups is not None:
        grouped = sum(len(g) for g in groups if len(g) > 1)
        say(f"{grouped} of {len(features)} training questions share a paragraph: batched together, context run once")
    return groups


def _nan_hint(config: RunConfig, model_type: str) -> str:
    if config.training.precision == "fp16" or model_type.startswith("t5"):
        return "fp16 overflows in T5; train in bf16 or fp32, or lower training.learning_rate"
    return f"try a lower training.learning_rate (now {config.training.learning_rate:g}) or max_grad_norm"


def _write_log(run: RunDirectory, trainer) -> None:
    lines = "".join(json.dumps(entry) + "\n" for entry in trainer.state.log_history)
    write_text_atomic(Path(run.path) / "train_log.jsonl", lines)


def _model_selection(config: RunConfig, trainer) -> dict:
    """What best-model selection and early stopping did, from the Trainer's state, for
    summary.json; each is also said on the console. Empty when neither was asked for."""
    t, state = config.training, trainer.state
    result: dict = {}
    metric = t.metric_for_best_model if t.metric_for_best_model.startswith("eval_") else f"eval_{t.metric_for_best_model}"
    if t.load_best_model_at_end:
        checkpoint = Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None
        result["best_model"] = {
            "checkpoint": checkpoint,
            "step": state.best_global_step,
            "metric": metric,
            "value": state.best_metric,
        }
        if checkpoint:
            say(f"best model: {checkpoint} (step {state.best_global_step}, validation {metric} "
                f"{state.best_metric:.4g}), loaded as the adapter")  # fmt: skip
        else:
            say("best model: no evaluation ran, so the last step's weights are the adapter")
    stopper = next((c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)), None)
    if stopper is not None:
        waited = stopper.early_stopping_patience_counter
        stopped = waited >= stopper.early_stopping_patience
        result["early_stopping"] = {
            "stopped": stopped,
            "step": state.global_step if stopped else None,
            "max_steps": state.max_steps,
            "evaluations_without_improvement": waited,
            "patience": stopper.early_stopping_patience,
        }
        if stopped:
            say(f"early stopping: stopped at step {state.global_step} of {state.max_steps}, after {waited} "
                f"evaluations without improvement in validation {metric}")  # fmt: skip
        else:
            say(f"early stopping: did not trigger ({waited} of {stopper.early_stopping_patience} evaluations "
                f"without improvement at the end)")  # fmt: skip
    return result
