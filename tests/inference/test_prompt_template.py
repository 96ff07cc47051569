"""An adapter records the prompt template it trained with (loraqa.json) and answers with it; an adapter
saved before loraqa recorded one keeps the template of that time, whatever the default becomes."""

from __future__ import annotations

import json

import pytest
from run_helpers import tiny_config

from loraqa.config.loader import load_config
from loraqa.config.schema import ModelConfig
from loraqa.data.records import QARecord
from loraqa.errors import ConfigError
from loraqa.formulations import causal
from loraqa.formulations.causal import CausalFormulation
from loraqa.inference.ready import model_config_for_adapter
from loraqa.pipeline import run_training

RECORD = QARecord(id="1", context="Ada founded it in {question} 1843.", question="Who founded it?", answers=[])


def test_an_adapter_answers_with_the_template_it_recorded(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    config = tiny_config(tiny_model_dir("gpt2"), qa_files, tmp_path / "run", "evaluation.baseline=false")
    run_training(config)
    meta_path = tmp_path / "run" / "adapter" / "loraqa.json"
    meta = json.loads(meta_path.read_text())
    assert meta["model_config"]["prompt_template"] == causal.PROMPT_TEMPLATE

    trained_with = causal.PROMPT_TEMPLATE
    monkeypatch.setattr(causal, "PROMPT_TEMPLATE", "New default.\n{context}\n{question}")  # a later release
    answering = model_config_for_adapter(meta_path.parent, config.model)
    assert answering.prompt_template == trained_with
    assert CausalFormulation(answering).prompt_template == trained_with

    del meta["model_config"]["prompt_template"]  # an adapter saved before templates were recorded
    meta_path.write_text(json.dumps(meta))
    answering = model_config_for_adapter(meta_path.parent, config.model)
    assert CausalFormulation(answering).prompt_template == causal.UNRECORDED_PROMPT_TEMPLATE == trained_with


def test_prompts_are_built_from_the_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir("gpt2"))
    formulation = CausalFormulation(ModelConfig(prompt_template="Q: {question} C: {context}", use_chat_template=False))
    text = tokenizer.decode(formulation.prompt_ids(RECORD, tokenizer, reserve=8))
    assert text == "Q: Who founded it? C: Ada founded it in {question} 1843.\nAnswer:"  # the context as written


@pytest.mark.parametrize(
    ("template", "problem"),
    [("Q: {question}", "must contain {context}"), ("{question} {context} {answer}", "only {question} and {context}")],
)
def test_a_template_that_cannot_prompt_is_refused_when_the_config_loads(template, problem):
    with pytest.raises(ConfigError, match=problem):
        load_config(None, ["model.formulation=causal", f"model.prompt_template={template}"])


def test_only_a_causal_prompt_is_a_template():
    with pytest.raises(ConfigError, match="model.prompt_template"):
        load_config(None, ["model.formulation=seq2seq", "model.prompt_template={question} {context}"])
