"""Phases `baseline` and `evaluate`: the base model alone, then the trained adapter, on the test
split (and the adapter on validation, which is what anything choosing between runs reads)."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from loraqa import distributed
from loraqa.atomic import atomic_directory
from loraqa.config.validate import mutates_base
from loraqa.console import say
from loraqa.inference.evaluate import EvalOutcome, at_threshold, evaluate_records, write_outcome
from loraqa.inference.uncertainty import calibration_summary
from loraqa.lora.calibration_file import write_calibration
from loraqa.lora.no_answer import write_threshold
from loraqa.metrics.abstention import best_threshold
from loraqa.metrics.calibration import Calibrator
from loraqa.pipeline.prepare_phase import Prepared
from loraqa.runs.files import EVALUATION_FILES, METRICS_FILE


@dataclass
class Evaluation:
    """The adapter's scores: `test` as written to the run directory; `validation` the metrics on the
    validation split (None when the run has none). Choose between runs on `validation`, never `test`."""

    test: EvalOutcome
    validation: dict | None


# What baseline/metrics.json adds to the metrics (which base, no adapter).
_BASELINE_EXTRA = ("model", "adapter")


def baseline(prepared: Prepared, measured: Path | None = None) -> dict | None:
    """The base model (LoRA disabled) on the test questions: its metrics, also written under
    `baseline/`; read back when a resumed run already measured it. None when not asked for.

    `measured`: another run's complete `baseline/` measured with the same model, data, evaluation
    and seed (a sweep's earlier trial, `sweeps.trial.baseline_donor`): copied, not evaluated again.
    Training does not depend on it (`_trainable_kept`, `_replayed_random_state`)."""
    config, run = prepared.config, prepared.run
    if not config.evaluation.baseline:
        return None
    started = time.perf_counter()
    saved = run.baseline / METRICS_FILE
    if distributed.broadcast(saved.exists()):  # a resumed run already measured it on the same questions
        return json.loads(saved.read_text(encoding="utf-8"))
    if measured is not None and distributed.broadcast((measured / METRICS_FILE).is_file()):
        say(f"baseline measured with the same settings in {measured}: reused")
        if distributed.is_main():  # [ddp]
            with atomic_directory(run.baseline) as tmp:  # whole or not at all, metrics.json included
                for name in EVALUATION_FILES:
                    if (measured / name).is_file():
                        shutil.copyfile(measured / name, tmp / name)
        prepared.phase_seconds["baseline"] = round(time.perf_counter() - started, 1)
        metrics = json.loads((measured / METRICS_FILE).read_text(encoding="utf-8"))
        return {key: value for key, value in metrics.items() if key not in _BASELINE_EXTRA}  # as if measured here
    say("evaluating the base model without adapter (baseline)")
    # The base model itself: disabled LoRA layers pass their input through, and sampled decodings
    # draw the numbers they drew before LoRA was attached (its init consumed some since).
    peft_model = prepared.peft_model
    # PiSSA/OLoRA moved part of the base into the adapter: the untrained adapter, on, is the base.
    off = nullcontext() if mutates_base(config.lora) else peft_model.disable_adapter()
    with _trainable_kept(peft_model), off, _replayed_random_state(prepared.draws):
        outcome = evaluate_records(
            prepared.spec.formulation,
            peft_model.get_base_model(),
            prepared.tokenizer,
            prepared.data.test,
            prepared.settings,
            label="baseline",
        )
    if distributed.is_main():  # [ddp]
        write_outcome(outcome, run.baseline, extra={_BASELINE_EXTRA[0]: config.model.name, _BASELINE_EXTRA[1]: None})
    prepared.phase_seconds["baseline"] = round(time.perf_counter() - started, 1)
    return outcome.metrics


def evaluate(prepared: Prepared) -> Evaluation:
    """Merge the adapter (same answers as unmerged, faster to run), answer the test split (written
    as metrics.json and predictions) and, when there is one, the validation split."""
    started = time.perf_counter()
    formulation, tokenizer, settings = prepared.spec.formulation, prepared.tokenizer, prepared.settings
    # A quantized base stays unmerged: merging would round the update into 4/8 bits.
    peft_model = prepared.peft_model
    merged = peft_model if prepared.config.lora.quantize_base != "none" else peft_model.merge_and_unload()
    test = evaluate_records(formulation, merged, tokenizer, prepared.data.test, settings, label="adapter")
    validation = None
    if prepared.data.validation:
        on_validation = evaluate_records(
            formulation, merged, tokenizer, prepared.data.validation, settings, label="validation"
        )
        if prepared.data.version_2:
            test, on_validation = _thresholded(prepared, test, on_validation)
        validation = on_validation.metrics
        if distributed.is_main():  # [ddp] per question, as test's: what the threshold and calibration were fitted on
            write_outcome(on_validation, prepared.run.validation, extra={"split": "validation"})
        # Confidence calibration: fitted on validation, measured on test (metrics/calibration.py)
        test.metrics["calibration"] = calibration_summary(on_validation.rows, test.rows)
        if distributed.is_main():  # [ddp] the adapter carries it: predict, serve and the API answer with it
            calibration = test.metrics["calibration"]
            write_calibration(
                prepared.run.adapter, Calibrator.from_dict(calibration["calibrator"]), calibration["fitted_on"]
            )
    elif prepared.data.version_2:
        test.metrics["no_answer_threshold"] = _threshold_record(prepared.settings.null_score_diff_threshold, "default")
    extra = {"model": prepared.config.model.name, "adapter": str(prepared.run.adapter)}
    if distributed.is_main():  # [ddp]
        write_outcome(test, prepared.run.path, extra=extra)
    prepared.phase_seconds["evaluate"] = round(time.perf_counter() - started, 1)
    return Evaluation(test, validation)


def _thresholded(prepared: Prepared, test: EvalOutcome, on_validation: EvalOutcome) -> tuple[EvalOutcome, EvalOutcome]:
    """SQuAD v2 with `null_score_diff_threshold: auto`: the threshold that maximises validation F1
    (never test's), both splits decided at it, and the adapter made to answer with it. A number the
    user gave is kept, and recorded as such."""
    config, tokenizer, settings = prepared.config, prepared.tokenizer, prepared.settings
    if config.evaluation.null_score_diff_threshold != "auto":
        test.metrics["no_answer_threshold"] = _threshold_record(settings.null_score_diff_threshold, "config")
        return test, on_validation
    choice = best_threshold(on_validation.rows)
    test = at_threshold(test, prepared.data.test, tokenizer, settings, choice.threshold)
    on_validation = at_threshold(on_validation, prepared.data.validation, tokenizer, settings, choice.threshold)
    test.metrics["no_answer_threshold"] = {
        **_threshold_record(choice.threshold, "validation"),
        "validation_f1": choice.f1,
        "validation_exact_match": choice.exact_match,
        "validation_questions": len(on_validation.rows),
        "curve": choice.curve,  # validation F1, HasAns F1, NoAns F1 at each threshold (the report's plot)
    }
    say(
        f"no-answer threshold {choice.threshold:.3f}: the best validation F1 ({choice.f1:.2f}) of "
        f"{len(on_validation.rows)} questions"
    )
    if distributed.is_main():  # [ddp] the adapter answers with it wherever it answers (eval, predict, serve, API)
        write_threshold(prepared.run.adapter, choice, "validation", len(on_validation.rows))
    return test, on_validation


def _threshold_record(value: float, chosen_on: str) -> dict:
    return {"value": value, "chosen_on": chosen_on}


@contextmanager
def _trainable_kept(model):
    """Give every parameter back the requires_grad it had before the block. Training must not depend
    on whether this process measured the baseline (a resumed run reads it from disk): peft's
    `disable_adapter` makes every modules_to_save copy trainable on leaving, the copies `attach_lora`
    froze too (BERT's inert segment embeddings), which a run that measured its baseline then trained
    and its --resume did not: another adapter, or an optimizer state that no longer loads."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


@contextmanager
def _replayed_random_state(state):
    """Run the block drawing the random numbers `state` gives, then restore the current ones."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        yield
