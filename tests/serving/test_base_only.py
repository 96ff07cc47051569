"""`--base-only` next to adapters on the same base: one loaded base, answering with adapters disabled.

The base-only entry must not load the base a second time; its answers equal the base's own
(`loraqa predict` without an adapter), and the adapters' answers stay what `loraqa predict` gives.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_api import predict_alone
from tiny_models import synthetic_records

import loraqa.inference.ready as ready_module
from loraqa.data.records import QARecord
from loraqa.device import plan_device
from loraqa.inference.answer import Answer, answer
from loraqa.inference.ready import load_ready_model
from loraqa.models.loading import inspect_base
from loraqa.serving.registry import BASE_ONLY_NAME, AdapterSource, build_registry

QUESTIONS = [QARecord(r["id"], r["context"], r["question"]) for r in synthetic_records(5)]


@pytest.fixture
def base_loads(monkeypatch) -> list[str]:
    """Every base model load_ready_model loads (its load_model calls), by model name."""
    loads: list[str] = []
    real = ready_module.load_model

    def counting(spec, model_config, *args, **kwargs):
        loads.append(model_config.name)
        return real(spec, model_config, *args, **kwargs)

    monkeypatch.setattr(ready_module, "load_model", counting)
    return loads


@pytest.fixture
def tokenizer_loads(monkeypatch) -> list[str]:
    """Every base tokenizer loaded (load_tokenizer, for the registry's key or by load_ready_model), by model name."""
    loads: list[str] = []

    def counting(real):
        def load(spec, model_config, *args, **kwargs):
            loads.append(model_config.name)
            return real(spec, model_config, *args, **kwargs)

        return load

    monkeypatch.setattr(ready_module, "load_tokenizer", counting(ready_module.load_tokenizer))
    return loads


def base_alone(base_dir, config) -> list[Answer]:
    """`loraqa predict --model BASE` without an adapter: the base as loaded from disk."""
    model_config = dataclasses.replace(config.model, name=str(base_dir))
    spec = inspect_base(model_config)
    ready = load_ready_model(model_config, plan_device("cpu", "fp32", spec.model_type), None, spec=spec)
    return answer(ready, config, QUESTIONS)


def rows(answers: list[Answer]) -> list[tuple]:
    return [(a.text, a.confidence) for a in answers]


@pytest.mark.parametrize("adapters", [("extractive",), ("extractive", "extractive2")])
def test_base_only_shares_the_adapters_base(adapters, trained_adapters, tiny_model_dir, serve_config, base_loads):
    base_dir = str(tiny_model_dir("bert"))
    registry = build_registry(  # `loraqa serve --adapter ... --base-only --model BASE`
        [AdapterSource(n, trained_adapters[n]) for n in adapters], serve_config, base_name=base_dir, base_only=True
    )
    assert base_loads == [base_dir]  # one base model loaded, for the adapters and the base-only entry alike
    base = registry.adapters[BASE_ONLY_NAME]
    assert base.ready.model is registry.adapters["extractive"].ready.model
    assert registry.describe()[-1]["shares_base"] is True

    expected_base = base_alone(base_dir, serve_config)
    assert rows(registry.answer(BASE_ONLY_NAME, QUESTIONS, None)) == rows(expected_base)
    for name in adapters:  # unchanged by the base-only entry, before and after it answered
        assert rows(registry.answer(name, QUESTIONS, None)) == rows(
            predict_alone(trained_adapters[name], serve_config, QUESTIONS)
        )
    assert rows(registry.answer(BASE_ONLY_NAME, QUESTIONS, None)) == rows(expected_base)  # adapters re-enabled after
    assert rows(registry.answer("extractive", QUESTIONS, None)) != rows(expected_base)  # the adapter really answers


def test_base_only_on_another_base_loads_its_own(
    trained_adapters, tiny_model_dir, serve_config, base_loads, tokenizer_loads
):
    t5_dir = str(tiny_model_dir("t5"))
    registry = build_registry(
        [AdapterSource("extractive", trained_adapters["extractive"])], serve_config, base_name=None, base_only=False
    )
    assert len(base_loads) == 1
    base_loads.clear()
    tokenizer_loads.clear()
    config = dataclasses.replace(serve_config, model=dataclasses.replace(serve_config.model, name=t5_dir))
    registry = build_registry(
        [AdapterSource("extractive", trained_adapters["extractive"])], config, base_name=None, base_only=True
    )
    assert len(base_loads) == 2 and base_loads[-1] == t5_dir  # the bert adapter's base, then t5 alone
    assert tokenizer_loads == [t5_dir]  # its tokenizer once: the one the registry read is the one it answers with
    assert registry.adapters[BASE_ONLY_NAME].ready.model is not registry.adapters["extractive"].ready.model
    assert registry.adapters[BASE_ONLY_NAME].peft_name is None
