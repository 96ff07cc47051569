"""An adapter's README gives the prompt its formulation builds: changing a prompt changes the README."""

from __future__ import annotations

import dataclasses

import pytest

from loraqa.config.schema import ModelConfig
from loraqa.data.records import QARecord
from loraqa.formulations import causal, seq2seq
from loraqa.lora.adapter_readme import adapter_readme


def _meta(formulation: str, closed_book: bool = False) -> dict:
    config = dataclasses.asdict(ModelConfig(formulation=formulation, closed_book=closed_book))
    return {"formulation": formulation, "model_config": config, "base": {"name": "org/base", "kind": "hub"}}


@pytest.mark.parametrize("closed_book", [False, True])
def test_the_readme_gives_the_prompt_seq2seq_builds(closed_book):
    built = seq2seq.Seq2SeqFormulation(ModelConfig(closed_book=closed_book)).prompt_text(
        QARecord(id="1", question="{question}", context="{context}", answers=[])
    )
    assert f"Prompt: `{built}`;" in adapter_readme(_meta("seq2seq", closed_book))


def test_changing_the_causal_prompt_changes_the_readme(monkeypatch):
    assert "short span copied from the context.\\nContext: {context}\\nQuestion: {question}`" in adapter_readme(
        _meta("causal")
    )
    monkeypatch.setattr(causal, "PROMPT_TEMPLATE", "Quote the context.\nContext: {context}\nQuestion: {question}")
    assert "Prompt (body): `Quote the context.\\nContext: {context}\\nQuestion: {question}`" in adapter_readme(
        _meta("causal")
    )


def test_the_readme_gives_the_template_the_adapter_recorded():
    meta = _meta("causal")
    meta["model_config"]["prompt_template"] = "Q: {question}\nC: {context}"
    assert "Prompt (body): `Q: {question}\\nC: {context}`" in adapter_readme(meta)


def test_the_readme_names_the_class_the_formulation_builds():
    assert "AutoModelForQuestionAnswering.from_pretrained" in adapter_readme(_meta("extractive"))
    assert "AutoModelForCausalLM.from_pretrained" in adapter_readme(_meta("causal"))
