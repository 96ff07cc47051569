"""Questions for several adapters on one base in one model call (peft's per-row `adapter_names`).

Four adapters on one tiny base of each formulation (one trained adapter, its LoRA factors and head redrawn per copy so
the four answer differently): a batch mixing their questions must give each question the answer
its adapter gives alone (`Registry.answer`: `set_adapter`, that adapter's questions only), and the
server must answer a request mixing them in one model call.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from loraqa.data.records import QARecord
from loraqa.serving.app import create_app
from loraqa.serving.registry import AdapterSource, build_registry
from loraqa.serving.settings import ServeSettings
from tiny_models import synthetic_records

ADAPTERS = ("a", "b", "c", "d")
QUESTIONS = [QARecord(r["id"], r["context"], r["question"]) for r in synthetic_records(12)]


def redrawn_copies(adapter_dir: str, root) -> dict[str, str]:
    """Four copies of an adapter, each with its LoRA B factors and head weights drawn anew (seeded)."""
    copies = {}
    for index, name in enumerate(ADAPTERS):
        target = root / name
        shutil.copytree(adapter_dir, target)
        weights = load_file(target / "adapter_model.safetensors")
        generator = torch.Generator().manual_seed(index)
        for key, tensor in weights.items():
            if "lora_B" in key or "qa_outputs" in key:
                weights[key] = torch.randn(tensor.shape, generator=generator) * 0.5
        save_file(weights, target / "adapter_model.safetensors")
        copies[name] = str(target)
    return copies


@pytest.fixture(scope="module", params=["extractive", "seq2seq", "causal"])
def registry(request, trained_adapters, serve_config, tmp_path_factory):
    copies = redrawn_copies(trained_adapters[request.param], tmp_path_factory.mktemp(f"mixed-{request.param}"))
    return build_registry([AdapterSource(n, copies[n]) for n in ADAPTERS], serve_config)


def owners(count: int) -> list[str]:
    return [ADAPTERS[i % len(ADAPTERS)] for i in range(count)]


def alone(registry, names: list[str]) -> list[tuple]:
    """Each question's answer from its adapter alone: set_adapter, a batch of that adapter's questions only."""
    rows: list[tuple | None] = [None] * len(names)
    for adapter in ADAPTERS:
        mine = [i for i, n in enumerate(names) if n == adapter]
        for i, found in zip(mine, registry.answer(adapter, [QUESTIONS[i] for i in mine], None)):
            rows[i] = found
    return [shown(found) for found in rows]


def shown(found) -> tuple:
    return (found.text, found.start, found.end, found.no_answer, found.id)


def confidences(answers) -> list[float]:
    return [found.confidence for found in answers]


def test_the_four_adapters_share_one_batch_key_and_answer_differently(registry):
    assert len({registry.batch_key(n) for n in ADAPTERS}) == 1
    per_adapter = [tuple(shown(a) + (a.confidence,) for a in registry.answer(n, QUESTIONS, None)) for n in ADAPTERS]
    assert len(set(per_adapter)) == len(ADAPTERS)  # else a mixed-up order could not show


def test_a_mixed_batch_answers_as_each_adapter_alone(registry):
    names = owners(len(QUESTIONS))
    mixed = registry.answer_rows(names, QUESTIONS, None)
    assert [shown(a) for a in mixed] == alone(registry, names)
    expected = []
    for adapter in ADAPTERS:
        mine = [i for i, n in enumerate(names) if n == adapter]
        expected += list(zip(mine, confidences(registry.answer(adapter, [QUESTIONS[i] for i in mine], None))))
    for i, confidence in expected:
        assert mixed[i].confidence == pytest.approx(confidence, abs=2e-4)


def test_a_request_mixing_adapters_is_one_model_call(registry):
    names = owners(8)
    items = [{"question": q.question, "context": q.context, "adapter": n} for q, n in zip(QUESTIONS, names)]
    with TestClient(create_app(registry, ServeSettings(max_batch=8))) as client:
        before = client.app.state.batcher.batches
        response = client.post("/v1/answer", json=items)
        assert response.status_code == 200, response.text
        assert client.app.state.batcher.batches - before == 1
    got = [(row["adapter"], row["answer"], row["start"], row["end"]) for row in response.json()]
    expected = [(n, text, start, end) for n, (text, start, end, _, _) in zip(names, alone(registry, names))]
    assert got == expected
