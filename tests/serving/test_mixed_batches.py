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
from tiny_models import synthetic_records

from loraqa.data.records import QARecord
from loraqa.serving.app import create_app
from loraqa.serving.registry import AdapterSource, build_registry
from loraqa.serving.settings import ServeSettings

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
        for i, found in zip(mine, registry.answer(adapter, [QUESTIONS[i] for i in mine], None), strict=True):
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
        expected += list(
            zip(mine, confidences(registry.answer(adapter, [QUESTIONS[i] for i in mine], None)), strict=True)
        )
    for i, confidence in expected:
        assert mixed[i].confidence == pytest.approx(confidence, abs=2e-4)


def test_questions_on_one_paragraph_for_several_adapters_answer_as_each_alone(registry):
    """Causal prompts on one paragraph share its tokens (a prefix run once per adapter, as each alone runs
    it); rows are ordered by adapter inside the batch and answers come back in the questions' order."""
    context = QUESTIONS[0].context
    asked = [QARecord(f"p{i}", context, q.question) for i, q in enumerate(QUESTIONS[:8])]
    names = ["b", "a", "b", "c", "a", "a", "d", "b"]  # not in adapter order: the batch reorders its rows
    mixed = [shown(a) for a in registry.answer_rows(names, asked, None)]
    expected: list[tuple | None] = [None] * len(names)
    for adapter in ADAPTERS:
        mine = [i for i, n in enumerate(names) if n == adapter]
        for i, found in zip(mine, registry.answer(adapter, [asked[i] for i in mine], None), strict=True):
            expected[i] = shown(found)
    assert mixed == expected


def test_a_request_mixing_adapters_is_one_model_call(registry):
    names = owners(8)
    items = [
        {"question": q.question, "context": q.context, "adapter": n}
        for q, n in zip(QUESTIONS[: len(names)], names, strict=True)
    ]
    with TestClient(create_app(registry, ServeSettings(max_batch=8))) as client:
        before = client.app.state.batcher.batches
        response = client.post("/v1/answer", json=items)
        assert response.status_code == 200, response.text
        assert client.app.state.batcher.batches - before == 1
    got = [(row["adapter"], row["answer"], row["start"], row["end"]) for row in response.json()]
    expected = [
        (n, text, start, end) for n, (text, start, end, _, _) in zip(names, alone(registry, names), strict=True)
    ]
    assert got == expected


def test_a_runtime_adapter_joins_its_loaded_base_mixes_and_leaves_it(trained_adapters, serve_config, tmp_path):
    """POST /v1/adapters of an adapter whose base is loaded unmerged attaches it there (no base load),
    it answers as it does alone and mixes with the others; DELETE removes its weights from the base,
    and unloading the base's last adapter frees the base."""
    import gc
    import weakref

    copies = redrawn_copies(trained_adapters["extractive"], tmp_path)
    shutil.copytree(trained_adapters["causal"], tmp_path / "gpt")  # a base of its own
    registry = build_registry([AdapterSource(n, copies[n]) for n in ADAPTERS[:2]], serve_config)
    # c answering alone, on a base shared with d (unmerged, as it will be when it joins a and b)
    alone_registry = build_registry([AdapterSource("c", copies["c"]), AdapterSource("d", copies["d"])], serve_config)
    expected = [shown(a) for a in alone_registry.answer("c", QUESTIONS[:4], None)]
    del alone_registry
    model = weakref.ref(registry.adapters["a"].ready.model)
    admin = {"Authorization": "Bearer token"}
    settings = ServeSettings(max_batch=8, admin_token="token", adapter_root=str(tmp_path))
    with TestClient(create_app(registry, settings)) as client:
        assert client.post("/v1/adapters", json={"name": "c", "path": "c"}, headers=admin).status_code == 201
        joined = registry.adapters["c"]
        assert joined.ready.model is model() and joined.peft_name in model().peft_config  # no second base
        assert registry.batch_key("c") == registry.batch_key("a")
        assert [shown(a) for a in registry.answer("c", QUESTIONS[:4], None)] == expected
        items = [
            {"question": q.question, "context": q.context, "adapter": n}
            for q, n in zip(QUESTIONS[:4], "cacb", strict=True)
        ]
        before = client.app.state.batcher.batches
        rows = client.post("/v1/answer", json=items).json()
        assert client.app.state.batcher.batches - before == 1
        assert [r["answer"] for r in rows[::2]] == [e[0] for e in expected[::2]]  # c's questions 0 and 2
        assert client.delete("/v1/adapters/c", headers=admin).status_code == 200
        assert joined.peft_name not in model().peft_config
        del joined
        assert client.delete("/v1/adapters/a", headers=admin).status_code == 200  # "default", the first
        assert client.post("/v1/adapters", json={"name": "c", "path": "c"}, headers=admin).status_code == 201
        assert client.delete("/v1/adapters/b", headers=admin).status_code == 200
        assert client.post("/v1/answer", json={**items[0], "adapter": "c"}).json()["answer"] == expected[0][0]
        assert registry.adapters["c"].ready.model is model()
        assert client.post("/v1/adapters", json={"name": "gpt", "path": "gpt"}, headers=admin).status_code == 201
        assert client.delete("/v1/adapters/c", headers=admin).status_code == 200  # the bert base's last adapter
        gc.collect()
        assert model() is None
        assert client.post("/v1/answer", json={**items[0], "adapter": "gpt"}).status_code == 200
