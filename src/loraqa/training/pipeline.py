"""`loraqa train`: setup -> baseline -> fit -> save -> evaluate, reading top to bottom.

Everything that can fail on user input (config, data, model limits, device) is checked before the
model's weights are loaded, and everything that needs the model but no training (LoRA target
modules, the trainable share, training features) before the run directory is claimed and before
the baseline, which is the same base model (LoRA disabled) on the same test questions.
"""

from __future__ import annotations

import errno
import json
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState

from loraqa.config.schema import RunConfig
from loraqa.console import say
from loraqa.config.validate import check_lora_for_model, check_position_limit, mutates_base, needs_validation
from loraqa.data.prepare import RunData, load_run_data
from loraqa.evaluation.runner import evaluate_records, format_table, predict_settings, write_outcome
from loraqa.lora.adapter import (
    ADAPTER_FILES,
    adapted_layers,
    adapter_meta,
    attach_lora,
    load_adapter_weights,
    parameter_counts,
    save_adapter,
)
from loraqa.models.loading import inspect_base, load_model, load_tokenizer
from loraqa.runs.atomic import write_json_atomic, write_text_atomic
from loraqa.errors import DataError, RunDirError
from loraqa.runs.rundir import RunDirectory
from loraqa.training import distributed
from loraqa.training.arguments import training_arguments
from loraqa.device import plan_device
from loraqa.training.trainer import FeatureDataset, QATrainer, last_complete_checkpoint, shared_prompt_groups
from loraqa.training.tracking import report_run, trainer_callbacks  # tracking (issue 15 §2)


def run_training(
    config: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks=(),
    select_on_validation: bool = False,
) -> dict:
    """Train an adapter as configured; return the summary that is also written to summary.json.

    `callbacks`: extra transformers TrainerCallbacks (a sweep's pruning reporter).
    `select_on_validation`: a caller that chooses between runs (sweeps, comparisons) needs the
    validation split and its final metrics even when training itself does not read them."""
    started = time.perf_counter()
    # Every check that needs no training runs before the run directory is claimed, so a refused run
    # leaves nothing behind: data, model name, positions and layers (config only), then the LoRA
    # target modules and the trainable share (on the attached model), all before the baseline.
    data = load_run_data(config.data, validation=select_on_validation or needs_validation(config))
    spec = inspect_base(config.model)
    check_position_limit(config.model.max_seq_length, config.model.name, spec.hf_config)
    plan = plan_device(config.training.device, config.training.precision, spec.model_type)
    distributed.init_process_group(cpu=plan.device == "cpu")  # [ddp] join torchrun's job (no-op alone)
    check_lora_for_model(config.lora, spec.model_type, plan.device)  # QLoRA's device and package, OLoRA on Conv1D
    adapted_layers(config.lora.layers_to_transform, spec.hf_config)  # a missing layer fails before any weights load
    if config.training.torch_threads:
        torch.set_num_threads(config.training.torch_threads)
    say(f"model {config.model.name} ({spec.model_type}, {spec.formulation.name}) on {plan.description}")
    say(f"data: {len(data.train)} train, {len(data.validation)} validation, {len(data.test)} test questions")
    set_seed(config.training.seed)  # also fixes the freshly initialised QA head
    tokenizer = load_tokenizer(spec, config.model)
    model = load_model(spec, config.model, tokenizer, plan.torch_device, quantize=config.lora.quantize_base)
    draws = _random_state()  # what the baseline drew from when it ran before LoRA was attached
    new_tokens = tokenizer.convert_tokens_to_ids(config.model.add_tokens) if config.model.add_tokens else None
    peft_model = attach_lora(model, config.lora, spec.formulation, spec.model_type, new_tokens)
    features = spec.formulation.training_features(data.train, tokenizer)
    if not features:
        raise DataError(config.data.train, "no training examples left after sampling")
    run = RunDirectory(config.run_dir)
    # [ddp] rank 0 claims the directory; the others wait and share its refusal, if any
    distributed.run_on_main(lambda: run.open_for_training(config, resume=resume, overwrite=overwrite))
    try:
        return _train(
            config, run, resume, data, spec, plan, tokenizer, peft_model, features, draws, started, list(callbacks)
        )
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


def _train(config: RunConfig, run: RunDirectory, resume: bool, data: RunData, spec, plan, tokenizer, peft_model,
           features, draws, started: float, callbacks: list) -> dict:  # fmt: skip
    say(f"run directory {run.path}")
    settings = predict_settings(config, data.version_2)
    summary: dict = {"run_dir": str(run.path), "model": config.model.name, "device": plan.description}
    if config.evaluation.baseline:
        summary["baseline"] = _baseline(config, run, spec, peft_model, tokenizer, data, settings, draws)

    if config.training.gradient_checkpointing:
        peft_model.get_base_model().enable_input_require_grads()  # LoRA-only grads need a grad path through frozen inputs
    trainable, total = parameter_counts(peft_model)
    say(f"trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")

    trainer = _trainer(config, run, spec, peft_model, tokenizer, data, features, settings, plan, callbacks)
    checkpoint = (
        distributed.run_on_main(lambda: last_complete_checkpoint(str(run.checkpoints))) if resume else None
    )  # [ddp]
    finished = _finished_training(run, checkpoint) if resume else None
    fit_started = time.perf_counter()
    if finished is None:
        if resume:
            say(f"resuming from {checkpoint}" if checkpoint else "no checkpoint yet: training from the start")
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
        summary["train_loss"] = train_output.training_loss
        if distributed.is_main():  # [ddp]
            _write_log(run, trainer)
    else:
        # Training already reached its last step: train nothing, keep (or write once) that adapter.
        load_adapter_weights(peft_model, finished.weights)
        summary["train_loss"] = finished.train_loss
        if finished.state is not None:
            trainer.state = finished.state
            if distributed.is_main():  # [ddp]
                _write_log(run, trainer)
        say(f"training already finished at step {finished.step}: using {finished.weights}, evaluating only")
    summary["train_seconds"] = round(time.perf_counter() - fit_started, 1)
    summary.update(_model_selection(config, trainer))
    divergence = getattr(trainer, "divergence_warning", None)
    if divergence:
        summary["divergence_warning"] = divergence

    if finished is None or finished.weights != run.adapter:
        meta = adapter_meta(
            config.model,
            spec.formulation.name,
            spec.hf_config,
            tokenizer,
            peft_model,
            version_2=data.version_2,
            config=config,
            quantize_base=config.lora.quantize_base,
        )
        if distributed.is_main():  # [ddp]
            save_adapter(peft_model, tokenizer, run.adapter, meta)
            say(f"adapter saved to {run.adapter}")
        distributed.barrier()  # [ddp]

    # Same answers as unmerged, faster to run; a quantized base stays unmerged (merging rounds into 4/8 bits).
    model_for_eval = peft_model if config.lora.quantize_base != "none" else peft_model.merge_and_unload()
    outcome = evaluate_records(spec.formulation, model_for_eval, tokenizer, data.test, settings, label="adapter")
    if distributed.is_main():  # [ddp]
        write_outcome(outcome, run.path, extra={"model": config.model.name, "adapter": str(run.adapter)})
    summary["adapter"] = outcome.metrics
    # --- final validation evaluation: what sweeps and comparisons choose on (never the test set) ---
    if data.validation:
        summary["validation"] = evaluate_records(
            spec.formulation, model_for_eval, tokenizer, data.validation, settings, label="validation"
        ).metrics
    # --- end of final validation evaluation ---
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    if not distributed.is_main():  # [ddp] rank 0 writes and prints the results
        return summary
    write_json_atomic(run.path / "summary.json", summary)
    # --- tracking: what happened outside Trainer, to the runs trainer_callbacks started ---
    report_run(config, run.path, summary, step=trainer.state.global_step, parameters=(trainable, total))
    # --- end of tracking ---

    rows = [(f"{config.model.name} (no adapter)", summary["baseline"])] if "baseline" in summary else []
    rows.append((f"{config.model.name} + LoRA", outcome.metrics))
    print(format_table(rows))
    print(f"run directory: {run.path}  (training {summary['train_seconds']}s, total {summary['total_seconds']}s)")
    if divergence:
        say(f"warning: {divergence}")
    return summary


def _random_state():
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


@contextmanager
def _replayed_random_state(state):
    """Run the block drawing the random numbers `state` gives, then restore the current ones."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        yield


@dataclass
class _Finished:
    step: int
    weights: Path  # the adapter directory, or the checkpoint whose weights become the adapter
    state: TrainerState | None  # the checkpoint's, when the train log is still to be written
    train_loss: float | None


def _finished_training(run: RunDirectory, checkpoint: str | None) -> _Finished | None:
    """On --resume: has training already reached its last step? A complete adapter is only written
    after the last step; a checkpoint at the state's max_steps means the kill came after training
    (while saving the adapter). Resuming Trainer from there would run one step too many."""
    if all((run.adapter / name).is_file() for name in ADAPTER_FILES):
        log = run.path / "train_log.jsonl"
        entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.is_file() else []
        losses = [e["train_loss"] for e in entries if "train_loss" in e]
        step = max((e.get("step", 0) for e in entries), default=0)
        return _Finished(step, run.adapter, None, losses[-1] if losses else None)
    if checkpoint is None:
        return None
    state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME))
    if not 0 < state.max_steps <= state.global_step:
        return None
    weights = Path(checkpoint)
    if state.best_model_checkpoint and Path(state.best_model_checkpoint).is_dir():
        weights = Path(state.best_model_checkpoint)  # load_best_model_at_end: the adapter is the best one
    return _Finished(state.global_step, weights, state, None)


def _baseline(config, run, spec, peft_model, tokenizer, data: RunData, settings, draws) -> dict:
    saved = run.baseline / "metrics.json"
    if distributed.broadcast(saved.exists()):  # a resumed run already measured it on the same questions
        return json.loads(saved.read_text(encoding="utf-8"))
    say("evaluating the base model without adapter (baseline)")
    # The base model itself: disabled LoRA layers pass their input through, and sampled decodings
    # draw the numbers they drew before LoRA was attached (its init consumed some since).
    # PiSSA/OLoRA moved part of the base into the adapter: the untrained adapter, on, is the base.
    off = nullcontext() if mutates_base(config.lora) else peft_model.disable_adapter()
    with off, _replayed_random_state(draws):
        base = peft_model.get_base_model()
        outcome = evaluate_records(spec.formulation, base, tokenizer, data.test, settings, label="baseline")
    if distributed.is_main():  # [ddp]
        write_outcome(outcome, run.baseline, extra={"model": config.model.name, "adapter": None})
    return outcome.metrics


def _trainer(config, run, spec, peft_model, tokenizer, data: RunData, features, settings, plan, callbacks) -> QATrainer:
    formulation = spec.formulation

    def evaluate_validation(model) -> dict:
        return evaluate_records(formulation, model, tokenizer, data.validation, settings, label="validation").metrics

    evaluator = evaluate_validation if config.training.eval_strategy != "no" else None

    if config.training.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(config.training.early_stopping_patience, config.training.early_stopping_threshold)
        )
    callbacks = [*callbacks, *trainer_callbacks(config, run.path)]  # tracking: TensorBoard, W&B/MLflow runs
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
        stop_on_divergence=config.training.stop_on_divergence,
        loraplus_lr_ratio=config.training.loraplus_lr_ratio,
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
    metric = (
        t.metric_for_best_model if t.metric_for_best_model.startswith("eval_") else f"eval_{t.metric_for_best_model}"
    )
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
