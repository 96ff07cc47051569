"""The OpenAI-compatible API of a real `loraqa serve` process, driven by the official `openai` client.

One server (extractive and causal tiny adapters, an API key from LORAQA_API_KEY) answers every test:
answers equal `loraqa predict`'s, streamed chunks add up to the plain answer, errors have OpenAI's
shape and status (the client raises its typed exceptions), a missing or wrong key is a 401 while
/health stays open, each response carries its request id, and /metrics counts what was sent.
"""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

openai = pytest.importorskip("openai")
parser = pytest.importorskip("prometheus_client.parser")

from test_process import start_server, stop  # noqa: E402
from tiny_models import synthetic_records  # noqa: E402

from loraqa.cli import main  # noqa: E402

KEY = "test-key-123"
ADAPTERS = {"squad": "extractive", "gpt": "causal"}
RECORDS = synthetic_records(3)
OVERRIDES = ("generation.max_new_tokens=4",)


@pytest.fixture(scope="module")
def server(trained_adapters, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-openai") / "serve.log"
    os.environ["LORAQA_API_KEY"] = KEY  # the environment variable, as a deployment sets it
    try:
        adapters = [arg for name, kind in ADAPTERS.items() for arg in ("--adapter", f"{name}={trained_adapters[kind]}")]
        process, url = start_server(log, *adapters, *OVERRIDES)
    finally:
        del os.environ["LORAQA_API_KEY"]
    try:
        yield url, log
    finally:
        stop(process)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, timeout=120, max_retries=0)


def predicted(adapter_dir: str, record: dict, tmp_path) -> dict:
    """What `loraqa predict` writes for this question (the CLI, in-process)."""
    out = tmp_path / f"{record['id']}-{os.path.basename(os.path.dirname(adapter_dir))}.jsonl"
    args = [
        "predict",
        "--adapter",
        adapter_dir,
        "--question",
        record["question"],
        "--context",
        record["context"],
        "--output",
        str(out),
        "--device",
        "cpu",
        *OVERRIDES,
    ]
    assert main(args) == 0
    return json.loads(out.read_text().splitlines()[0])


def test_models_list_names_the_served_adapters(client):
    assert [m.id for m in client.models.list()] == list(ADAPTERS)
    assert client.models.retrieve("gpt").id == "gpt"


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_chat_and_completions_answer_as_loraqa_predict(name, client, trained_adapters, tmp_path):
    for record in RECORDS:
        want = predicted(trained_adapters[ADAPTERS[name]], record, tmp_path)
        chat = client.chat.completions.create(
            model=name,
            messages=[
                {"role": "system", "content": record["context"]},
                {"role": "user", "content": record["question"]},
            ],
        )
        assert chat.choices[0].message.content == want["answer"]
        extras = chat.choices[0].model_extra["loraqa"]
        assert extras["confidence"] == want["confidence"] and extras["no_answer"] == (not want["answer"].strip())
        if extras["start"] is not None:
            assert record["context"][extras["start"] : extras["end"]] == want["answer"]
        by_field = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": record["question"]}],
            extra_body={"context": record["context"]},
        )
        assert by_field.choices[0].message.content == want["answer"]
        completion = client.completions.create(
            model=name, prompt=f"Context: {record['context']}\nQuestion: {record['question']}"
        )
        assert completion.choices[0].text == want["answer"]


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_streamed_chunks_add_up_to_the_answer_and_end_with_done(name, client, server):
    record = RECORDS[0]
    messages = [{"role": "system", "content": record["context"]}, {"role": "user", "content": record["question"]}]
    plain = client.chat.completions.create(model=name, messages=messages).choices[0].message.content
    chunks = list(client.chat.completions.create(model=name, messages=messages, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(pieces) == plain
    assert len(pieces) == (1 if ADAPTERS[name] == "extractive" else len(plain)), pieces  # '~' tokens: one a chunk
    assert chunks[-1].choices[0].finish_reason == "stop" and "loraqa" in chunks[-1].choices[0].model_extra
    raw = httpx.post(
        f"{server[0]}/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
        json={"model": name, "messages": messages, "stream": True},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")
    streamed = client.completions.create(
        model=name, prompt=f"Context: {record['context']}\nQuestion: {record['question']}", stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == plain


def test_errors_have_openai_shape_and_status(client, server):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "Who?"}], extra_body={"context": "Ada."}
        )
    assert missing.value.status_code == 404
    assert "nope" in missing.value.body["message"] and missing.value.body["type"] == "not_found_error"
    with pytest.raises(openai.BadRequestError) as no_context:
        client.chat.completions.create(model="squad", messages=[{"role": "user", "content": "Who?"}])
    assert "context" in no_context.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad_body:
        client.chat.completions.create(model="squad", messages="not a list")
    assert bad_body.value.body["message"].startswith("messages")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_a_missing_or_wrong_key_is_refused_and_health_stays_open(server):
    url, _ = server
    for key in ("wrong-key", ""):
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key=key or "x", max_retries=0, timeout=60)
        if not key:
            bad = bad.with_options(default_headers={"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as refused:
            bad.models.list()
        assert refused.value.status_code == 401 and refused.value.body["type"] == "authentication_error"
    assert httpx.post(f"{url}/v1/answer", json={}, timeout=60).status_code == 401
    loading = httpx.post(f"{url}/v1/adapters", json={}, timeout=60)  # the admin token's, off on this server
    assert loading.status_code == 403 and "runtime adapter loading is off" in loading.json()["error"]
    assert httpx.get(f"{url}/v1/adapters", timeout=60).status_code == 401
    assert httpx.get(f"{url}/health", timeout=60).status_code == 200


def test_every_response_carries_its_request_id_and_the_log_names_it(server):
    url, log = server
    mine = httpx.get(f"{url}/health", headers={"X-Request-Id": "trace-42"}, timeout=60)
    assert mine.headers["x-request-id"] == "trace-42"
    given = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    generated = given.headers["x-request-id"]
    assert len(generated) == 32 and generated != "trace-42"
    hostile = httpx.get(f"{url}/health", headers={"X-Request-Id": "a b\\x" * 30}, timeout=60)
    assert hostile.headers["x-request-id"].isalnum()  # a client's odd id is replaced, never logged as is
    text = log.read_text()
    assert "request trace-42 GET /health 200" in text and f"request {generated} GET /v1/models 200" in text


def test_metrics_parse_and_count_the_requests_sent(server):
    url, _ = server
    auth = {"Authorization": f"Bearer {KEY}"}

    def samples() -> dict:
        text = httpx.get(f"{url}/metrics", timeout=60).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(text)
            for s in family.samples
        }

    def requests(endpoint: str, adapter: str, status: str) -> float:
        key = ("loraqa_requests_total", (("adapter", adapter), ("endpoint", endpoint), ("status", status)))
        return before_or_after.get(key, 0.0)

    before_or_after = samples()
    ok0, missing0 = requests("/v1/answer", "squad", "200"), requests("/v1/chat/completions", "", "404")
    questions0 = before_or_after.get(("loraqa_questions_total", (("adapter", "squad"),)), 0.0)
    record = RECORDS[0]
    for _ in range(3):
        r = httpx.post(
            f"{url}/v1/answer",
            headers=auth,
            timeout=120,
            json={"question": record["question"], "context": record["context"], "adapter": "squad"},
        )
        assert r.status_code == 200
    for _ in range(2):
        r = httpx.post(
            f"{url}/v1/chat/completions",
            headers=auth,
            timeout=60,
            json={"model": "nope", "context": "Ada.", "messages": [{"role": "user", "content": "Who?"}]},
        )
        assert r.status_code == 404
    before_or_after = samples()
    assert requests("/v1/answer", "squad", "200") == ok0 + 3
    assert requests("/v1/chat/completions", "", "404") == missing0 + 2
    assert before_or_after[("loraqa_questions_total", (("adapter", "squad"),))] == questions0 + 3
    assert before_or_after[("loraqa_adapters_loaded", ())] == 2
    assert ("loraqa_queue_depth", ()) in before_or_after
    assert before_or_after[("loraqa_batch_size_count", ())] >= 3
    assert before_or_after[("loraqa_model_seconds_total", (("adapter", "squad"),))] > 0
    assert before_or_after[("loraqa_request_seconds_count", (("endpoint", "/v1/answer"),))] >= 3


def test_a_client_that_leaves_a_stream_stops_its_generation(trained_adapters, tmp_path):
    """Long generations (56 new tokens, what the tiny model's 64 positions allow, past newlines): the
    client reads the first token and hangs up; the server's model call stops at its next token instead
    of generating the rest (counted by loraqa_generations_stopped_total)."""
    process, url = start_server(
        tmp_path / "serve.log",
        "--adapter",
        f"gpt={trained_adapters['causal']}",
        "generation.max_new_tokens=56",
        "generation.stop_at_newline=false",
    )
    record = RECORDS[0]
    body = {
        "model": "gpt",
        "stream": True,
        "context": record["context"],
        "messages": [{"role": "user", "content": record["question"]}],
    }
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                event = json.loads(line[6:]) if line.startswith("data: {") else {}
                assert "error" not in event, event
                if event and event["choices"][0]["delta"].get("content"):
                    break  # a first token arrived: generation is under way; leave
            else:
                pytest.fail("no token was streamed")
        deadline = time.monotonic() + 120
        while _stopped(url) < 1:
            assert time.monotonic() < deadline, "the generation was not stopped"
            time.sleep(0.2)
        plain = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False}, timeout=120)
        assert plain.status_code == 200 and _stopped(url) == 1  # the next request is answered in full
    finally:
        stop(process)


def _stopped(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=60).text
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "loraqa_generations_stopped_total":
                return sample.value
    return 0.0
