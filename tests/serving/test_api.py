"""The HTTP API in-process (TestClient) over tiny trained adapters of every formulation.

The key equivalence: what the server answers equals `loraqa.inference.answer.answer` (what
`loraqa predict` prints) for the same adapter and input, including two adapters sharing one base.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from tiny_models import synthetic_records

from loraqa.data.records import QARecord
from loraqa.device import plan_device
from loraqa.inference.answer import Answer, answer
from loraqa.inference.ready import load_ready_model, model_config_for_adapter
from loraqa.models.loading import inspect_base
from loraqa.serving.app import create_app
from loraqa.serving.registry import AdapterSource, build_registry
from loraqa.serving.settings import ServeSettings

NAMES = ("extractive", "extractive2", "seq2seq", "causal")
QUESTIONS = [QARecord(r["id"], r["context"], r["question"]) for r in synthetic_records(6)]


@pytest.fixture(scope="module")
def registry(trained_adapters, serve_config):
    return build_registry([AdapterSource(n, trained_adapters[n]) for n in NAMES], serve_config)


@pytest.fixture(scope="module")
def client(registry):
    with TestClient(create_app(registry, ServeSettings(max_batch=4, max_context_chars=400))) as client:
        yield client


def predict_alone(adapter_dir: str, config, records) -> list[Answer]:
    """`loraqa predict`'s way: this adapter alone on its own base, merged."""
    model_config = model_config_for_adapter(adapter_dir, config.model)
    spec = inspect_base(model_config)
    ready = load_ready_model(model_config, plan_device("cpu", "fp32", spec.model_type), adapter_dir, spec=spec)
    return answer(ready, config, records)


@pytest.mark.parametrize("name", NAMES)
def test_answers_equal_loraqa_predict(name, client, trained_adapters, serve_config):
    expected = predict_alone(trained_adapters[name], serve_config, QUESTIONS)
    for record, want in zip(QUESTIONS, expected, strict=True):
        got = client.post("/v1/answer", json={"question": record.question, "context": record.context, "adapter": name})
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["answer"], body["confidence"]) == (want.text, want.confidence)
        assert body["adapter"] == name and body["latency_ms"] > 0
        if body["start"] is not None:
            assert record.context[body["start"] : body["end"]] == body["answer"]
        else:
            assert body["answer"] not in record.context or not body["answer"]
    batch = client.post(
        "/v1/answer", json=[{"question": r.question, "context": r.context, "adapter": name} for r in QUESTIONS[:4]]
    )
    assert batch.status_code == 200
    assert [(b["answer"], b["confidence"]) for b in batch.json()] == [(w.text, w.confidence) for w in expected[:4]]


def test_adapters_on_one_base_share_it_and_answer_differently(registry):
    first, second = registry.adapters["extractive"], registry.adapters["extractive2"]
    assert first.ready.model is second.ready.model  # one set of base weights
    assert registry.adapters["seq2seq"].ready.model is not first.ready.model
    record = QUESTIONS[:3]
    a = [r.confidence for r in registry.answer("extractive", record, None)]
    b = [r.confidence for r in registry.answer("extractive2", record, None)]
    assert a != b  # set_adapter really switched (different seeds give different heads)
    assert [r.confidence for r in registry.answer("extractive", record, None)] == a  # and back


def test_adapters_listing_health_page_and_docs(client):
    listed = client.get("/v1/adapters").json()["adapters"]
    assert [a["name"] for a in listed] == list(NAMES)
    assert listed[0]["default"] and not listed[1]["default"]
    by_name = {a["name"]: a for a in listed}
    assert by_name["extractive"]["formulation"] == "extractive" and by_name["causal"]["formulation"] == "causal"
    assert by_name["extractive"]["shares_base"] and not by_name["seq2seq"]["shares_base"]
    # Any client may ask: names and bases only, never where a file lives (the tiny bases are directories).
    assert all(set(a) == set(listed[0]) and "adapter_dir" not in a for a in listed)
    assert not any("/" in str(value) for a in listed for value in a.values()), listed
    assert 0 < by_name["seq2seq"]["trainable_percent"] < 100  # a percentage, as in summary.json
    assert isinstance(by_name["causal"]["f1"], float)  # recorded by the run next to the adapter
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/v1/answer" in client.get("/openapi.json").json()["paths"]


def test_default_adapter_is_the_first(client):
    record = QUESTIONS[0]
    body = client.post("/v1/answer", json={"question": record.question, "context": record.context}).json()
    assert body["adapter"] == "extractive"


def test_health_answers_while_a_batch_runs(registry, monkeypatch):
    release, started = threading.Event(), threading.Event()
    real = registry.answer

    def slow(name, records, decoding):
        started.set()
        assert release.wait(10)
        return real(name, records, decoding)

    monkeypatch.setattr(registry, "answer", slow)
    with TestClient(create_app(registry, ServeSettings())) as client:
        result = {}
        record = QUESTIONS[0]
        asker = threading.Thread(
            target=lambda: result.update(
                r=client.post("/v1/answer", json={"question": record.question, "context": record.context})
            )
        )
        asker.start()
        assert started.wait(10)
        t0 = time.perf_counter()
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["busy"] is True
        assert time.perf_counter() - t0 < 2
        release.set()
        asker.join(10)
        assert result["r"].status_code == 200


def test_requests_arriving_together_share_a_model_call(registry, monkeypatch):
    calls = []
    release = threading.Event()
    real = registry.answer

    def held(n, records, d):
        calls.append(len(records))
        if len(calls) == 1:
            assert release.wait(300)  # the first call holds the model while the other requests arrive
        return real(n, records, d)

    monkeypatch.setattr(registry, "answer", held)
    app = create_app(registry, ServeSettings(max_batch=8, batch_window_ms=300))
    with TestClient(app) as client:
        threads = [
            threading.Thread(
                target=client.post,
                args=("/v1/answer",),
                kwargs={"json": {"question": r.question, "context": r.context}},
            )
            for r in QUESTIONS
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120  # every question queued behind the held call, however slow the machine
        while sum(calls) + app.state.batcher.pending < len(QUESTIONS):
            assert time.monotonic() < deadline, "the requests never all reached the queue"
            time.sleep(0.01)
        release.set()
        for t in threads:
            t.join(20)
    assert sum(calls) == len(QUESTIONS) and len(calls) == 2  # all that waited behind the first call: one call


def test_poison_requests_among_concurrent_ones_cost_no_good_answer(registry, monkeypatch):
    """Some of many concurrent clients send lone surrogates (valid JSON, not text: the tokenizer fails on
    them), batching on: each poison request gets its own 422, and every good one its answer."""
    expected = {
        r.question: (a.text, a.confidence)
        for r, a in zip(QUESTIONS, registry.answer("extractive", QUESTIONS, None), strict=True)
    }
    calls, release, real = [], threading.Event(), registry.answer

    def held(name, records, decoding):
        calls.append([r.question for r in records])
        if len(calls) == 1:
            assert release.wait(30)  # the first call holds the model while the others gather in the queue
        return real(name, records, decoding)

    monkeypatch.setattr(registry, "answer", held)
    good = [{"question": r.question, "context": r.context} for r in QUESTIONS] * 2
    poison = [
        {"question": "Who\ud800?", "context": QUESTIONS[0].context},
        {"question": QUESTIONS[1].question, "context": QUESTIONS[1].context + "\udfff"},
        {"question": "\udc80" * 3, "context": QUESTIONS[2].context},
    ] * 2
    bodies = good[:1] + [body for pair in zip(good[1:7], poison, strict=True) for body in pair] + good[7:]
    results: dict[int, object] = {}

    def send(index: int) -> None:
        content = json.dumps(bodies[index]).encode()  # ASCII-escaped: httpx's own encoder refuses surrogates
        results[index] = client.post("/v1/answer", content=content, headers={"content-type": "application/json"})

    app = create_app(registry, ServeSettings(max_batch=8, batch_window_ms=300))
    with TestClient(app) as client:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        threads[0].start()
        deadline = time.monotonic() + 30
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        for thread in threads[1:]:
            thread.start()
        while app.state.batcher.pending < len(good) - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for thread in threads:
            thread.join(30)
    answered = [
        i
        for i, body in enumerate(bodies)
        if body in good
        and results[i].status_code == 200
        and (results[i].json()["answer"], results[i].json()["confidence"]) == expected[body["question"]]
    ]
    assert len(answered) == len(good) == 12
    refused = [results[i] for i, body in enumerate(bodies) if body not in good]
    assert len(refused) == 6 and all(r.status_code == 422 and "lone surrogate" in r.json()["error"] for r in refused)
    assert sorted(q for call in calls for q in call) == sorted(body["question"] for body in good)
    assert max(len(call) for call in calls) > 1  # the good ones did share model calls


def test_a_lone_request_does_not_wait_the_collection_window(registry):
    record = QUESTIONS[0]
    with TestClient(create_app(registry, ServeSettings(batch_window_ms=5000))) as client:
        for _ in range(2):  # one client, one question after another
            started = time.perf_counter()
            got = client.post("/v1/answer", json={"question": record.question, "context": record.context})
            assert got.status_code == 200
            assert time.perf_counter() - started < 2.5  # the old rule waited the whole 5 s window


def test_a_timed_out_request_frees_its_slot(registry, monkeypatch):
    release = threading.Event()
    real = registry.answer
    seen = []

    def slow(name, records, decoding):
        seen.append(len(records))
        release.wait(300)
        return real(name, records, decoding)

    monkeypatch.setattr(registry, "answer", slow)
    record = QUESTIONS[0]
    good = {"question": record.question, "context": record.context}
    with TestClient(create_app(registry, ServeSettings(request_timeout_s=2.0, batch_window_ms=0))) as client:
        blocker = threading.Thread(target=client.post, args=("/v1/answer",), kwargs={"json": good})
        blocker.start()
        deadline = time.monotonic() + 120  # the blocker's batch is running, so the next one waits in the queue
        while not seen:
            assert time.monotonic() < deadline, "the first request never reached the model"
            time.sleep(0.01)
        late = client.post("/v1/answer", json=good)
        assert late.status_code == 504 and "withdrawn" in late.json()["error"]
        assert client.get("/health").json()["pending"] <= 1
        release.set()
        blocker.join(20)
        assert client.post("/v1/answer", json=good).status_code == 200
    assert seen == [1, 1]  # the withdrawn question never reached the model


def test_min_confidence_withholds_an_answer_and_says_so(client):
    record = QUESTIONS[0]
    question = {"question": record.question, "context": record.context}
    answered = client.post("/v1/answer", json=question).json()
    assert answered["abstained"] is False and "confidence" in answered
    withheld = client.post("/v1/answer", json={**question, "min_confidence": 1.0}).json()
    assert answered["confidence"] < 1.0 and withheld["abstained"] is True and withheld["answer"] == ""
    assert client.post("/v1/answer", json={**question, "min_confidence": 1.5}).status_code == 422
