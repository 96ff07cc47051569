"""The formulation contract, one set of checks run over every formulation (peft's common-tester pattern).

`formulations/base.py` states what a formulation does; each test below states one clause of it
and runs it on a tiny model of each formulation: BERT (extractive), GPT-2 (causal), T5 (seq2seq).
Behaviour particular to one formulation (the causal answer-only loss, extractive windows, shared
prefixes) is tested beside it in test_formulations.py / test_shared_prefix*.py; plain
transformers + peft agreement in tests/interop/.
"""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
from peft import TaskType
from run_helpers import tiny_config
from transformers import AutoConfig, AutoTokenizer

import loraqa
from loraqa.config.schema import ModelConfig
from loraqa.data.sources import load_records
from loraqa.formulations import Formulation, PredictSettings, choose_formulation
from loraqa.pipeline import run_training

CASES = [("bert", "extractive"), ("gpt2", "causal"), ("t5", "seq2seq")]
IDS = [f"{family}-{name}" for family, name in CASES]
# A rate at which a few steps move every tiny model's answers (as in tests/interop).
RATE = {"bert": 3e-2, "gpt2": 0.1, "t5": 0.2}


def _records(qa_files, n: int):
    return list(load_records(str(qa_files["test"])).records)[:n]


def _setup(model_dir, **settings) -> tuple[Formulation, object, object]:
    config = ModelConfig(name=str(model_dir), max_seq_length=96, doc_stride=32, **settings)
    formulation = choose_formulation(config, AutoConfig.from_pretrained(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    formulation.prepare_tokenizer(tokenizer)
    torch.manual_seed(0)
    model = formulation.auto_model_class().from_pretrained(model_dir)
    return formulation, tokenizer, model


@pytest.fixture(params=CASES, ids=IDS)
def case(request, tiny_model_dir):
    family, name = request.param
    formulation, tokenizer, model = _setup(tiny_model_dir(family))
    return family, name, formulation, tokenizer, model


def test_the_architecture_chooses_the_formulation_and_its_model_class(case):
    family, name, formulation, _, model = case
    assert formulation.name == name
    assert type(model) is formulation.auto_model_class()._model_mapping[type(model.config)]
    assert formulation.peft_task_type is None or formulation.peft_task_type in {t.value for t in TaskType}
    assert formulation.generates == (name != "extractive")  # a decoding applies only to generated answers


def test_features_have_what_collate_needs_and_batches_what_the_model_takes(case, qa_files):
    _, _, formulation, tokenizer, model = case
    records = _records(qa_files, 6)
    features = formulation.training_features(records, tokenizer)
    assert len(features) >= len(records)  # one per record, or more (extractive windows)
    for feature in features:
        assert feature["input_ids"] and all(isinstance(i, int) for i in feature["input_ids"])
    batch = formulation.collate(features, tokenizer)
    for label in formulation.label_names:
        assert label in batch, f"collate must give the Trainer its label {label!r}"
    assert batch["input_ids"].shape[0] == len(features)
    assert batch["input_ids"].shape[1] == max(len(f["input_ids"]) for f in features)  # padded to the longest only
    parameters = inspect.signature(model.forward).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):  # else the model takes any key
        assert set(batch) <= set(parameters), f"keys the model does not take: {set(batch) - set(parameters)}"


def test_a_batch_trains_with_a_finite_loss_and_gradient(case, qa_files):
    _, _, formulation, tokenizer, model = case
    batch = formulation.collate(formulation.training_features(_records(qa_files, 4), tokenizer), tokenizer)
    loss = formulation.compute_loss(model, batch)  # None: the model's own loss
    if loss is None:
        loss = model(**batch).loss
    assert loss.ndim == 0 and math.isfinite(float(loss)) and float(loss) > 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_prompt_groups_are_none_or_a_partition_of_the_features(case, qa_files):
    _, _, formulation, tokenizer, _ = case
    features = formulation.training_features(_records(qa_files, 8), tokenizer)
    groups = formulation.prompt_groups(features)
    if groups is not None:
        assert sorted(i for g in groups for i in g) == list(range(len(features)))


def test_predict_answers_every_record_once_in_order_with_a_confidence(case, qa_files):
    _, _, formulation, tokenizer, model = case
    records = _records(qa_files, 5)
    done: list[int] = []
    result = formulation.predict(
        model, tokenizer, records, PredictSettings(batch_size=2, max_new_tokens=4), progress=done.append
    )
    assert [p.id for p in result.predictions] == [r.id for r in records]
    for prediction in result.predictions:
        assert isinstance(prediction.text, str)
        assert 0.0 <= prediction.confidence <= 1.0
    assert sum(done) == len(records), "progress counts every record once"
    assert math.isfinite(result.metrics["eval_loss"]) and result.metrics["eval_loss"] > 0
    # Accuracies are percentages whatever they count (tokens or span ends); docs/usage.md "Outputs" (metrics.json keys).
    accuracies = {k: v for k, v in result.metrics.items() if k.endswith("_accuracy")}
    assert accuracies and all(0.0 <= v <= 100.0 for v in accuracies.values())
    quick = formulation.predict(
        model, tokenizer, records, PredictSettings(batch_size=2, max_new_tokens=4, with_loss=False)
    )
    assert "eval_loss" not in quick.metrics
    assert [p.text for p in quick.predictions] == [p.text for p in result.predictions]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def trained(request, tiny_model_dir, qa_files, tmp_path_factory):
    family, _ = request.param
    out = tmp_path_factory.mktemp(f"contract-{family}") / "run"
    config = tiny_config(
        tiny_model_dir(family),
        qa_files,
        out,
        "evaluation.baseline=false",
        "training.max_steps=8",
        f"training.learning_rate={RATE[family]}",
        "model.max_seq_length=256",
        "model.doc_stride=64",
    )
    run_training(config)
    return family, out


def test_a_saved_adapter_reloads_to_the_answers_training_gave(trained, qa_files):
    """What the run evaluated in memory (predictions.json, written before the adapter was reloaded
    anywhere) is what the saved adapter answers when loaded again, through the public API."""
    _, out = trained
    evaluated = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    records = list(load_records(str(qa_files["test"])).records)
    assert set(evaluated) == {r.id for r in records}
    assert any(text.strip() for text in evaluated.values()), "a trained adapter that says nothing proves nothing"
    # The run's answering settings (tiny_overrides): generation length and batch (padding) as it evaluated.
    qa = loraqa.load(
        out / "adapter", device="cpu", overrides={"generation.max_new_tokens": 4, "evaluation.batch_size": 4}
    )
    answers = qa.answer_batch([(r.question, r.context) for r in records])
    assert [a.text for a in answers] == [evaluated[r.id] for r in records]
    # Confidences are continuous: equal ones mean the weights training ended with came back. Answers
    # carry confidence rounded to 4 decimals (inference/predict.py), the run's rows the full value.
    rows = {row["id"]: row for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert [a.confidence for a in answers] == pytest.approx([rows[r.id]["confidence"] for r in records], abs=5.1e-5)
    for record, answer in zip(records, answers, strict=True):
        assert 0.0 <= answer.confidence <= 1.0
        assert answer.no_answer == (not answer.text.strip())
        if answer.start is not None:  # offsets, where the answer is a span of the context, point at it
            assert record.context[answer.start : answer.end] == answer.text
    if qa.formulation == "extractive":  # a span head always answers with a span of the context
        assert all(a.start is not None for a in answers if a.text)
