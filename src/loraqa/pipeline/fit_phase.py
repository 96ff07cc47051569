"""Phase `fit`: train the attached LoRA weights with `QATrainer`, the only place one is built.

On resume, a run whose training already reached its last step trains nothing: its adapter (or the
checkpoint that becomes it) is loaded and the run goes on to save and evaluate.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import EarlyStoppingCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState

from loraqa import distributed, families
from loraqa.atomic import write_text_atomic
from loraqa.config.schema import RunConfig
from loraqa.console import say
from loraqa.inference.evaluate import evaluate_records
from loraqa.lora.adapter import ADAPTER_FILES, load_adapter_weights
from loraqa.pipeline.prepare_phase import Prepared
from loraqa.runs.files import TRAIN_LOG_FILE
from loraqa.runs.rundir import RunDirectory
from loraqa.training.arguments import training_arguments
from loraqa.training.memory import PeakMemoryMeter
from loraqa.training.tracking import trainer_callbacks
from loraqa.training.trainer import FeatureDataset, QATrainer, last_complete_checkpoint, shared_prompt_groups


@dataclass
class Finished:
    """A resumed run whose training had already reached its last step."""

    step: int
    weights: Path  # the adapter directory, or the checkpoint whose weights become the adapter
    state: TrainerState | None  # the checkpoint's, when the train log is still to be written
    train_loss: float | None


@dataclass
class FitResult:
    train_loss: float | None
    train_seconds: float
    selection: dict = field(default_factory=dict)  # summary's best_model / early_stopping entries
    divergence_warning: str | None = None
    finished: Finished | None = None  # set when training had already finished (resume)
    log_history: list[dict] = field(default_factory=list)  # Trainer's, as written to train_log.jsonl
    global_step: int = 0  # the last optimizer step (trackers log the run's own metrics at it)
    peak_memory: dict = field(default_factory=dict)  # summary's peak_memory_* entries; empty if nothing trained


def fit(prepared: Prepared, callbacks=(), wrap_collate=None) -> FitResult:
    """Train (or, resumed after the last step, load) the adapter weights into `prepared.peft_model`.

    `callbacks`: extra transformers TrainerCallbacks (a sweep's pruning reporter). `wrap_collate`:
    collate -> collate, to observe the batches (the speed benchmark counts their positions)."""
    config, run, peft_model = prepared.config, prepared.run, prepared.peft_model
    if config.training.gradient_checkpointing:
        peft_model.get_base_model().enable_input_require_grads()  # LoRA-only grads need a grad path through frozen inputs
    say(
        f"trainable parameters {prepared.trainable_params:,} of {prepared.total_params:,} ({prepared.trainable_percent:.2f}%)"
    )
    meter = PeakMemoryMeter(prepared.plan.torch_device)
    trainer = _trainer(prepared, [*callbacks, meter], wrap_collate)
    checkpoint = (
        distributed.run_on_main(lambda: last_complete_checkpoint(str(run.checkpoints))) if prepared.resume else None
    )  # [ddp]
    finished = _finished_training(run, checkpoint) if prepared.resume else None
    started = time.perf_counter()
    peak_memory: dict = {}
    if finished is None:
        if prepared.resume:
            say(f"resuming from {checkpoint}" if checkpoint else "no checkpoint yet: training from the start")
        meter.start()
        try:
            train_loss = trainer.train(resume_from_checkpoint=checkpoint).training_loss
        finally:
            meter.stop()  # ends its RSS sampling thread even when training raised
        peak_memory = meter.record()  # [ddp] every rank: the largest rank's peak
        if distributed.is_main():  # [ddp]
            _write_log(run, trainer)
    else:
        # Training already reached its last step: train nothing, keep (or write once) that adapter.
        load_adapter_weights(peft_model, finished.weights)
        train_loss = finished.train_loss
        if finished.state is not None:
            trainer.state = finished.state
            if distributed.is_main():  # [ddp]
                _write_log(run, trainer)
        say(f"training already finished at step {finished.step}: using {finished.weights}, evaluating only")
    seconds = round(time.perf_counter() - started, 1)
    prepared.phase_seconds["fit"] = seconds
    result = FitResult(
        train_loss=train_loss,
        train_seconds=seconds,
        selection=_model_selection(config, trainer),
        divergence_warning=getattr(trainer, "divergence_warning", None),
        finished=finished,
        log_history=list(trainer.state.log_history),
        global_step=trainer.state.global_step,
        peak_memory=peak_memory,
    )
    trainer.release()  # its optimizer and its guards' cycle: freed with the run, not at the next collection
    return result


def _trainer(prepared: Prepared, callbacks: list, wrap_collate=None) -> QATrainer:
    config, formulation, tokenizer = prepared.config, prepared.spec.formulation, prepared.tokenizer
    data, settings, features = prepared.data, prepared.settings, prepared.features

    def evaluate_validation(model) -> dict:
        return evaluate_records(formulation, model, tokenizer, data.validation, settings, label="validation").metrics

    evaluator = evaluate_validation if config.training.eval_strategy != "no" else None
    if config.training.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(config.training.early_stopping_patience, config.training.early_stopping_threshold)
        )
    if distributed.is_main():  # [ddp] trackers write event files and runs from rank 0 only
        callbacks = [*callbacks, *trainer_callbacks(config, prepared.run.path)]  # TensorBoard, W&B/MLflow runs
    groups = _prompt_groups(config, formulation, prepared.peft_model, features)
    collate = functools.partial(formulation.collate, tokenizer=tokenizer, share_prefixes=groups is not None)
    return QATrainer(
        model=prepared.peft_model,
        args=training_arguments(config, prepared.plan, str(prepared.run.checkpoints), formulation.label_names),
        train_dataset=FeatureDataset(features, groups),
        eval_dataset=FeatureDataset(features[:1]) if evaluator else None,  # unused: QA evaluation runs instead
        data_collator=wrap_collate(collate) if wrap_collate else collate,
        processing_class=tokenizer,
        callbacks=callbacks,
        formulation=formulation,
        qa_evaluator=evaluator,
        nan_hint=_nan_hint(config, prepared.spec.model_type),
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
    if config.training.precision == "fp16" or families.fp16_unsafe(model_type):
        return "fp16 overflows in T5; train in bf16 or fp32, or lower training.learning_rate"
    return f"try a lower training.learning_rate (now {config.training.learning_rate:g}) or max_grad_norm"


def _finished_training(run: RunDirectory, checkpoint: str | None) -> Finished | None:
    """On --resume: has training already reached its last step? A complete adapter is only written
    after the last step; a checkpoint at the state's max_steps means the kill came after training
    (while saving the adapter). Resuming Trainer from there would run one step too many."""
    if all((run.adapter / name).is_file() for name in ADAPTER_FILES):
        log = run.path / TRAIN_LOG_FILE
        entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.is_file() else []
        losses = [e["train_loss"] for e in entries if "train_loss" in e]
        step = max((e.get("step", 0) for e in entries), default=0)
        return Finished(step, run.adapter, None, losses[-1] if losses else None)
    if checkpoint is None:
        return None
    state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME))
    if not 0 < state.max_steps <= state.global_step:
        return None
    weights = Path(checkpoint)
    if state.best_model_checkpoint and Path(state.best_model_checkpoint).is_dir():
        weights = Path(state.best_model_checkpoint)  # load_best_model_at_end: the adapter is the best one
    return Finished(state.global_step, weights, state, None)


def _write_log(run: RunDirectory, trainer) -> None:
    lines = "".join(json.dumps(entry) + "\n" for entry in trainer.state.log_history)
    write_text_atomic(Path(run.path) / TRAIN_LOG_FILE, lines)


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
            say(
                f"best model: {checkpoint} (step {state.best_global_step}, validation {metric} "
                f"{state.best_metric:.4g}), loaded as the adapter"
            )
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
            say(
                f"early stopping: stopped at step {state.global_step} of {state.max_steps}, after {waited} "
                f"evaluations without improvement in validation {metric}"
            )
        else:
            say(
                f"early stopping: did not trigger ({waited} of {stopper.early_stopping_patience} evaluations "
                f"without improvement at the end)"
            )
    return result
