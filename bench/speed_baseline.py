"""Variant (a) of bench/speed.py: the seeds' pipeline, rebuilt faithfully.

What the seed write-ups did, and what this file does on purpose:
- tokenize every example with `padding="max_length"` at the formulation's max length (right padding);
- plain `transformers.Trainer` + `peft.get_peft_model`, `default_data_collator`, random sampler;
- the model computes its own loss (causal: logits over the whole 49k vocabulary at every position);
- evaluate with batch-1 greedy `model.generate` on the unmerged PEFT model, stopping at EOS only
  (extractive: batch-1 forward of each padded window, then loraqa's span post-processing).

What is kept equal to loraqa, so only speed differs: the token ids of every prompt and answer
(loraqa's own prompt builders; the seeds' prompt wording is not a speed question), answer-only labels
(the seeds' full-sequence causal loss costs the same time), the gold span positions, the LoRA config,
the optimiser settings and the seed. Answers are read the same way: first line, stripped.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from common import CountingCollate, Setup, Timer, flop_model, train_report, vm_hwm_mib
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from loraqa.formulations import FORMULATIONS, PredictSettings
from loraqa.formulations.extractive import Window, best_answer, gold_positions
from loraqa.lora.presets import resolve_target_modules
from loraqa.metrics import squad_scores
from loraqa.models.loading import inspect_base


def seeds_training_arguments(setup: Setup, output_dir: str, label_names) -> TrainingArguments:
    """Trainer arguments as a seed would write them: same optimiser settings, random sampler."""
    t = setup.training
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        weight_decay=t.weight_decay,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        use_cpu=True,
        optim="adamw_torch",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=t.logging_steps,
        report_to="none",
        train_sampling_strategy="random",
        remove_unused_columns=False,
        label_names=list(label_names),
        disable_tqdm=True,
    )


# --- features padded to max_length -------------------------------------------------------------------


def _pad(ids: list[int], width: int, value: int) -> list[int]:
    return ids + [value] * (width - len(ids))


def causal_features(formulation, records, tokenizer) -> tuple[list[dict], list[int], list[int]]:
    """loraqa's prompt + answer + EOS ids, right-padded to max_seq_length; labels on the answer."""
    width = formulation.config.max_seq_length
    rows, lengths, targets = [], [], []
    for feature in formulation.training_features(records, tokenizer):
        ids, n = feature["input_ids"], feature["n_target"][0]
        labels = [-100] * (len(ids) - n) + ids[len(ids) - n :]
        rows.append(
            {
                "input_ids": _pad(ids, width, tokenizer.pad_token_id),
                "attention_mask": _pad([1] * len(ids), width, 0),
                "labels": _pad(labels, width, -100),
            }
        )
        lengths.append(len(ids))
        targets.append(n)
    return rows, lengths, targets


def seq2seq_features(formulation, records, tokenizer) -> tuple[list[dict], list[int], list[int]]:
    """Prompt and answer each tokenized with padding="max_length"; pad labels become -100."""
    config = formulation.config
    rows, lengths, targets = [], [], []
    for record in records:
        answer = record.answers[0].text if record.answers else ""
        source = tokenizer(
            formulation.prompt_text(record), max_length=config.max_seq_length, padding="max_length", truncation=True
        )
        target = tokenizer(
            text_target=answer, max_length=config.max_answer_length, padding="max_length", truncation=True
        )
        labels = [t if m else -100 for t, m in zip(target["input_ids"], target["attention_mask"], strict=True)]
        rows.append({"input_ids": source["input_ids"], "attention_mask": source["attention_mask"], "labels": labels})
        lengths.append(sum(source["attention_mask"]))
        targets.append(sum(target["attention_mask"]))
    return rows, lengths, targets


def extractive_windows(formulation, records, tokenizer) -> list[Window]:
    """Overflowing windows with doc_stride, each padded to max_seq_length, with gold positions."""
    config = formulation.config
    encoded = tokenizer(
        [r.question.lstrip() for r in records],
        [r.context for r in records],
        truncation="only_second",
        max_length=config.max_seq_length,
        stride=config.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    windows = []
    for i, input_ids in enumerate(encoded["input_ids"]):
        record_index = encoded["overflow_to_sample_mapping"][i]
        sequence_ids = encoded.sequence_ids(i)
        offsets = [tuple(s) if sequence_ids[k] == 1 else None for k, s in enumerate(encoded["offset_mapping"][i])]
        start, end = gold_positions(records[record_index], offsets)
        token_types = encoded["token_type_ids"][i] if "token_type_ids" in encoded else None
        windows.append(Window(record_index, input_ids, token_types, offsets, start, end))
    return windows


def _window_inputs(window: Window, pad_id: int) -> dict[str, list[int]]:
    inputs = {"input_ids": window.input_ids, "attention_mask": [int(t != pad_id) for t in window.input_ids]}
    if window.token_type_ids is not None:
        inputs["token_type_ids"] = window.token_type_ids
    return inputs


def extractive_features(formulation, records, tokenizer) -> tuple[list[dict], list[int], list[int]]:
    rows, lengths = [], []
    for window in extractive_windows(formulation, records, tokenizer):
        row = _window_inputs(window, tokenizer.pad_token_id)
        row.update(start_positions=window.start_position, end_positions=window.end_position)
        rows.append(row)
        lengths.append(sum(row["attention_mask"]))
    return rows, lengths, [0] * len(rows)


FEATURES = {"causal": causal_features, "seq2seq": seq2seq_features, "extractive": extractive_features}
# The task types the seeds pass to peft. QUESTION_ANS drops token_type_ids in the LoRA forward; the
# seeds train and answer through that same forward, so their pipeline is consistent, only weaker for BERT.
SEED_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "extractive": "QUESTION_ANS"}


# --- batch-1 evaluation ----------------------------------------------------------------------------


@torch.no_grad()
def answer_one_by_one(formulation, model, tokenizer, records, setup: Setup) -> dict[str, str]:
    """{id: answer}: one question per forward / generate call, as the seeds evaluated."""
    model.eval()
    if formulation.name == "extractive":
        return _extract_one_by_one(formulation, model, tokenizer, records)
    answers = {}
    settings = PredictSettings(max_new_tokens=setup.max_new_tokens)
    for record in records:
        ids = formulation.generation_prompt(record, tokenizer, settings)  # the prompt loraqa generates from
        input_ids = torch.tensor([ids])
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=setup.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[0, len(ids) :] if formulation.decoder_only else out[0]
        text = tokenizer.decode(new, skip_special_tokens=True)
        answers[record.id] = text.strip().split("\n", 1)[0].strip()
    return answers


def _extract_one_by_one(formulation, model, tokenizer, records) -> dict[str, str]:
    settings = PredictSettings()
    by_record: dict[int, list] = {}
    for window in extractive_windows(formulation, records, tokenizer):
        inputs = {k: torch.tensor([v]) for k, v in _window_inputs(window, tokenizer.pad_token_id).items()}
        out = model(**inputs)
        starts, ends = out.start_logits[0].float().numpy(), out.end_logits[0].float().numpy()
        by_record.setdefault(window.record_index, []).append((window, np.asarray(starts), np.asarray(ends)))
    answers = {}
    for index, record in enumerate(records):
        text, _ = best_answer(record, by_record.get(index, []), settings, formulation.config.max_answer_length)
        answers[record.id] = text
    return answers


# --- the run ---------------------------------------------------------------------------------------------


def run(setup: Setup, train_records, eval_records, *, train_only: bool = False) -> dict:
    timer = Timer()
    spec = inspect_base(setup.model)  # only resolves the offline name and reads the config
    formulation = FORMULATIONS[spec.formulation.name](setup.model)
    set_seed(setup.training.seed)
    with timer("load"):
        tokenizer = AutoTokenizer.from_pretrained(spec.path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = formulation.auto_model_class().from_pretrained(spec.path, dtype=torch.float32)
    flops = flop_model(model, formulation.name)
    lora = setup.lora
    modules_to_save = lora.modules_to_save or (list(formulation.default_modules_to_save) or None)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.lora_alpha,
            lora_dropout=lora.lora_dropout,
            bias=lora.bias,
            target_modules=resolve_target_modules(lora.target_modules, spec.model_type),
            modules_to_save=modules_to_save,
            task_type=SEED_TASK_TYPES[formulation.name],
        ),
    )

    with timer("tokenize"):
        rows, lengths, targets = FEATURES[formulation.name](formulation, train_records, tokenizer)
    collate = CountingCollate(default_data_collator, seq2seq=formulation.name == "seq2seq")
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = Trainer(
            model=peft_model,
            args=seeds_training_arguments(setup, output_dir, formulation.label_names),
            train_dataset=Dataset.from_list(rows).with_format("torch"),
            data_collator=collate,
        )
        started = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - started
    result = {
        "variant": "baseline",
        "train": train_report(
            questions=len(train_records),
            lengths=lengths,
            targets=targets,
            seq2seq=formulation.name == "seq2seq",
            positions=collate.positions,
            seconds=train_seconds,
            loss=output.training_loss,
            flops=flops,
        ),
        "rss_after_train_mib": round(vm_hwm_mib()),
    }
    if not train_only:
        answer_one_by_one(formulation, peft_model, tokenizer, eval_records[:1], setup)  # warm-up, untimed
        started = time.perf_counter()
        answers = answer_one_by_one(formulation, peft_model, tokenizer, eval_records, setup)
        seconds = time.perf_counter() - started
        scores = squad_scores(answers, {r.id: r.answer_texts for r in eval_records})
        result["eval"] = {
            "questions": len(eval_records),
            "batch_size": 1,
            "seconds": round(seconds, 2),
            "questions_per_s": round(len(eval_records) / seconds, 3),
            "f1": round(scores["f1"], 2),
            "exact_match": round(scores["exact_match"], 2),
        }
        result["answers"] = answers
    result["phase_seconds"] = timer.seconds
    return result
