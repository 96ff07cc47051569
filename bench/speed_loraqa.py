"""Variant (b) of bench/speed.py: loraqa as `loraqa train` runs it.

The pipeline's own `prepare` and `fit` phases (loraqa.pipeline), as `loraqa train` runs them: the
formulation's training_features / collate / compute_loss through the fit phase's `QATrainer`
(dynamic padding, length-grouped batches, causal logits only for answer tokens), then the adapter
merged and the formulation's batched `predict` (length-sorted, left-padded, KV cache, stop at
EOS/newline). Only the batches are observed (positions counted) and the answering timed here.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

from common import CountingCollate, Setup, Timer, flop_model, train_report, vm_hwm_mib

from loraqa.config.schema import EvaluationConfig, GenerationSettings, RunConfig
from loraqa.data.prepare import RunData
from loraqa.formulations import PredictSettings
from loraqa.metrics import squad_scores
from loraqa.pipeline import fit, prepare
from loraqa.training.trainer import shared_prompt_groups


def lengths_of(formulation_name: str, features: list[dict]) -> tuple[list[int], list[int]]:
    """Real tokens per feature (encoder side for seq2seq) and answer tokens per feature."""
    lengths = [len(f["input_ids"]) for f in features]
    if formulation_name == "causal":
        return lengths, [f["n_target"][0] for f in features]
    if formulation_name == "seq2seq":
        return lengths, [len(f["labels"]) for f in features]
    return lengths, [0] * len(features)


def run(setup: Setup, train_records, eval_records, *, train_only: bool = False, identity_questions: int = 0) -> dict:
    timer = Timer()
    config = RunConfig(
        model=setup.model,
        lora=setup.lora,
        training=setup.training,
        evaluation=EvaluationConfig(batch_size=setup.eval_batch_size, baseline=False),
        generation=GenerationSettings(max_new_tokens=setup.max_new_tokens),
    )
    data = RunData(list(train_records), [], list(eval_records), False, {})
    with tempfile.TemporaryDirectory() as output_dir:
        config = dataclasses.replace(config, output_dir=f"{output_dir}/run")
        with timer("load"):  # the prepare phase: model, LoRA, tokenized features, run directory
            prepared = prepare(config, data=data)
        formulation = prepared.spec.formulation
        flops = flop_model(prepared.peft_model.get_base_model(), formulation.name)
        features = prepared.features
        lengths, targets = lengths_of(formulation.name, features)
        seq2seq = formulation.name == "seq2seq"
        counting: list[CountingCollate] = []

        def wrap(collate):
            counting.append(CountingCollate(collate, seq2seq=seq2seq))
            return counting[-1]

        try:
            fitted = fit(prepared, wrap_collate=wrap)  # the fit phase `loraqa train` runs
        finally:
            prepared.run.release()
        collate = counting[0]
        shared = shared_prompt_groups(config.training, formulation, prepared.peft_model, features) is not None
        train_seconds = fitted.train_seconds
        peft_model, tokenizer = prepared.peft_model, prepared.tokenizer
    result = {
        "variant": "loraqa",
        "train": train_report(
            questions=len(train_records),
            lengths=lengths,
            targets=targets,
            seq2seq=seq2seq,
            positions=collate.positions,
            seconds=train_seconds,
            loss=fitted.train_loss,
            flops=flops,
            computed=collate.computed if shared else None,
        ),
        "shared_prompt_starts": shared,
        "rss_after_train_mib": round(vm_hwm_mib()),
    }
    if train_only:
        result["phase_seconds"] = timer.seconds
        return result

    with timer("merge"):
        merged = peft_model.merge_and_unload()  # as loraqa's pipeline evaluates
    # with_loss=False: time answering only (the seeds' loop computed no teacher-forced loss either)
    settings = PredictSettings(batch_size=setup.eval_batch_size, max_new_tokens=setup.max_new_tokens, with_loss=False)
    gold = {r.id: r.answer_texts for r in eval_records}
    formulation.predict(merged, tokenizer, eval_records[:1], settings)  # warm-up, untimed (as in the baseline)
    started = time.perf_counter()
    predicted = formulation.predict(merged, tokenizer, eval_records, settings)
    seconds = time.perf_counter() - started
    answers = {p.id: p.text for p in predicted.predictions}
    scores = squad_scores(answers, gold)
    result["eval"] = {
        "questions": len(eval_records),
        "batch_size": settings.batch_size,
        "seconds": round(seconds, 2),
        "questions_per_s": round(len(eval_records) / seconds, 3),
        "f1": round(scores["f1"], 2),
        "exact_match": round(scores["exact_match"], 2),
    }
    result["answers"] = answers

    if identity_questions:
        # The same merged model and prompts, one question per call: isolates what batching changes.
        subset = eval_records[:identity_questions]
        started = time.perf_counter()
        single = formulation.predict(merged, tokenizer, subset, dataclasses.replace(settings, batch_size=1))
        seconds = time.perf_counter() - started
        differing = {p.id: [answers[p.id], p.text] for p in single.predictions if p.text != answers[p.id]}
        result["batch1"] = {
            "questions": len(subset),
            "seconds": round(seconds, 2),
            "questions_per_s": round(len(subset) / seconds, 3),
            "identical": len(subset) - len(differing),
            "differing": differing,  # id -> [batched answer, batch-1 answer]
        }
    result["phase_seconds"] = timer.seconds
    return result
