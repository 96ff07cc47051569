"""Causal training runs a batch's shared prompt starts once and gets the loss and gradient of the
plain batch, where every row runs its whole prompt."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from run_helpers import tiny_config
from test_shared_prefix import TEMPLATE, paragraph_prompts, records_on_paragraphs, tiny_causal

from loraqa.config.schema import LoraSettings
from loraqa.formulations import shared_prefix
from loraqa.formulations.shared_prefix import training_split
from loraqa.lora.adapter import attach_lora
from loraqa.pipeline import run_training


def test_grouped_prompts_split_at_their_shared_start_and_loose_ones_before_their_last_token():
    prompts = paragraph_prompts(paragraphs=2, questions=3) + [TEMPLATE + [7] * 30]
    split = training_split(prompts)
    for i in range(6):
        assert split[i] == len(TEMPLATE) + 40 + 3 * (i // 3)  # template + the paragraph's context
    assert split[6] == len(prompts[6]) - 1


def test_no_split_when_no_two_prompts_share_more_than_the_template():
    assert training_split(paragraph_prompts(paragraphs=4, questions=1)) is None
    assert training_split([TEMPLATE + [5] * 20]) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=40), min_size=1, max_size=12))
def test_every_split_leaves_a_prompt_token_for_the_second_pass(prompts):
    prompts = [TEMPLATE[: len(p) % len(TEMPLATE)] + p for p in prompts]
    split = training_split(prompts)
    if split is not None:
        assert all(0 <= n < len(p) for n, p in zip(split, prompts, strict=True))
        assert len({tuple(p[:n]) for p, n in zip(prompts, split, strict=True)}) < len(prompts), "some start is shared"


def lora_model(ready):
    """A tiny causal model with LoRA whose B matrices are not zero, so every LoRA matrix gets a gradient."""
    model, tokenizer, formulation = ready
    peft_model = attach_lora(
        model,
        LoraSettings(r=4, lora_dropout=0.0, target_modules="attention", allow_large_trainable_share=True),
        formulation,
        model.config.model_type,
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.1)
    peft_model.eval()  # tiny GPT-2 has dropout 0.1, which would draw other masks in each pass; grads still flow
    return peft_model


def loss_and_grads(formulation, model, tokenizer, features, share: bool):
    batch = formulation.collate(features, tokenizer, share_prefixes=share)
    model.zero_grad()
    loss = formulation.compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return batch, loss.item(), grads


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_split_batches_give_the_plain_loss_and_gradient(family, tiny_model_dir, qa_rows):
    ready = tiny_causal(tiny_model_dir, family)
    _, tokenizer, formulation = ready
    model = lora_model(ready)
    features = formulation.training_features(records_on_paragraphs(qa_rows), tokenizer)
    plain, plain_loss, plain_grads = loss_and_grads(formulation, model, tokenizer, features, share=False)
    split, split_loss, split_grads = loss_and_grads(formulation, model, tokenizer, features, share=True)

    assert "prefix_input_ids" in split and "prefix_input_ids" not in plain
    assert split["prefix_input_ids"].shape[0] == 5, "four paragraphs and the lone question"
    assert split["input_ids"].shape[1] < plain["input_ids"].shape[1] // 2, "the second pass is short"
    assert split_loss == pytest.approx(plain_loss, rel=1e-5)
    assert set(split_grads) == set(plain_grads) and len(plain_grads) > 0
    for name, grad in plain_grads.items():
        assert grad.abs().max() > 0, name
        # Float sums in another order: equal to ~1e-6 of the largest entry (a wrong position: ~1e-1).
        assert (split_grads[name] - grad).abs().max() <= 2e-5 * grad.abs().max(), name


def test_training_batches_questions_on_one_paragraph_together(tiny_model_dir, qa_rows, tmp_path, monkeypatch):
    # Three questions on each of four contexts: shared starts, so the prefix pass must run.
    records = records_on_paragraphs(qa_rows)[:12]
    rows = [
        {
            "id": r.id,
            "question": r.question,
            "context": r.context,
            "answers": [{"text": a.text, "answer_start": a.answer_start} for a in r.answers],
        }
        for r in records
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    files = {"train": train, "test": train}
    passes: list[int] = []  # rows of each prefix pass the training loss runs
    counted = lambda model, ids, *rest: passes.append(len(ids)) or shared_prefix.prefix_cache(model, ids, *rest)  # noqa: E731
    monkeypatch.setattr("loraqa.formulations.causal.prefix_cache", counted)
    config = tiny_config(
        tiny_model_dir("llama"),
        files,
        tmp_path / "run",
        f"data.validation={train}",
        "training.max_steps=2",
        "training.per_device_train_batch_size=6",
        "evaluation.baseline=false",
        "evaluation.with_loss=false",
        "model.max_seq_length=256",
    )
    summary = run_training(config)
    assert summary["train_loss"] == pytest.approx(summary["train_loss"])  # finite
    assert passes[:2] == [2, 2], "each batch of 6 holds two paragraphs, each run once"

    passes.clear()
    config = tiny_config(
        tiny_model_dir("llama"),
        files,
        tmp_path / "checkpointed",
        f"data.validation={train}",
        "training.max_steps=2",
        "training.per_device_train_batch_size=6",
        "training.gradient_checkpointing=true",
        "evaluation.baseline=false",
        "evaluation.with_loss=false",
        "model.max_seq_length=256",
    )
    run_training(config)
    assert passes == [], "gradient checkpointing recomputes layers without the cache: no shared starts"
