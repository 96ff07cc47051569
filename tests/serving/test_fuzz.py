"""Malformed, mistyped, huge and empty requests: each gets a 4xx with a one-line JSON error, and the
server answers a good request afterwards. Nothing a client sends opens a file or loads a model."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loraqa.serving.app import create_app
from loraqa.serving.registry import AdapterSource, build_registry
from loraqa.serving.settings import ServeSettings

GOOD = {"question": "Who founded Avalon?", "context": "The town of Avalon was founded in 1800 by Ada."}
LIMITS = ServeSettings(max_batch=3, max_context_chars=200)

BAD_BODIES = [
    ("{not json", 400, "not valid JSON"),
    ("", 422, "empty body"),
    ("null", 422, "JSON object"),
    ('"a string"', 422, "JSON object"),
    ("42", 422, "JSON object"),
    ("[]", 422, "at least 1"),
    ("{}", 422, "question"),
    ('{"question": "q"}', 422, "context"),
    ('{"question": 1, "context": "c"}', 422, "question: Input should be a valid string"),
    ('{"question": "q", "context": ["c"]}', 422, "context"),
    ('{"question": "", "context": "c"}', 422, "question: must not be empty"),
    ('{"question": "q", "context": "   "}', 422, "context: must not be empty"),
    ('{"question": "q", "context": "c", "adapter": 3}', 422, "adapter"),
    ('{"question": "q", "context": "c", "model": "/etc/passwd"}', 422, "unknown field"),
    ('{"question": "q", "context": "c", "adapter": "/etc/passwd"}', 404, "unknown adapter"),
    ('{"question": "q", "context": "c", "adapter": "../../runs/x/adapter"}', 404, "unknown adapter"),
    ('{"question": "q", "context": "c", "decoding": "beam4; import os"}', 422, "unknown decoding"),
    ('{"question": "q", "context": "c", "decoding": "beam64"}', 422, "at most 8 beams"),
    ('[{"question": "q", "context": "c"}, 5]', 422, "item 1"),
    (json.dumps([GOOD] * 4), 413, "limit is 3"),
    (json.dumps({**GOOD, "context": "x" * 201}), 413, "--max-context-chars"),
    (json.dumps({**GOOD, "question": "x" * 1001}), 413, "question has 1001"),
    ("[" * 5000 + "]" * 5000, 400, "parsing the body"),  # deeper than the JSON parser goes
    # Lone surrogates: valid JSON, not valid text (tokenizers fail on them); quoted back escaped.
    ('{"question": "Who\\ud800?", "context": "c"}', 422, "question: holds a lone surrogate U+D800"),
    ('{"question": "q", "context": "\\udfffc"}', 422, "context: holds a lone surrogate U+DFFF"),
    ('{"question": "q", "context": "c", "adapter": "\\ud800"}', 422, "adapter: holds a lone surrogate"),
    ('{"question": "q", "context": "c", "decoding": "beam\\ud800"}', 422, "decoding: holds a lone surrogate"),
    ('[{"question": "q", "context": "c"}, {"question": "\\ud800", "context": "c"}]', 422, "item 1.question"),
    ('{"question": "q", "context": "c", "x\\ud800": 1}', 422, "unicode string"),  # a key pydantic cannot read
]


@pytest.fixture(scope="module")
def client(trained_adapters, serve_config):
    registry = build_registry([AdapterSource("squad", trained_adapters["extractive"])], serve_config)
    with TestClient(create_app(registry, LIMITS), raise_server_exceptions=False) as client:
        yield client


def assert_still_answers(client):
    good = client.post("/v1/answer", json=GOOD)
    assert good.status_code == 200 and good.json()["adapter"] == "squad"


@pytest.mark.parametrize("body,status,phrase", BAD_BODIES, ids=[b[:30] for b, _, _ in BAD_BODIES])
def test_each_bad_request_is_a_4xx_saying_what_is_wrong(client, body, status, phrase):
    response = client.post("/v1/answer", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert phrase in error and "\n" not in error
    assert_still_answers(client)


def test_bodies_over_the_byte_limit_are_refused_before_parsing(client):
    huge = b'{"question": "q", "context": "' + b"x" * (LIMITS.max_body_bytes + 10) + b'"}'
    response = client.post("/v1/answer", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["error"]
    assert_still_answers(client)


def test_a_streamed_body_over_the_byte_limit_is_refused_while_it_arrives(client):
    def chunks():  # no Content-Length: the limit must hold as the body comes in
        yield b'{"question": "q", "context": "'
        yield from (b"x" * 65_536 for _ in range(LIMITS.max_body_bytes // 65_536 + 2))
        yield b'"}'

    response = client.post("/v1/answer", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["error"]
    assert_still_answers(client)


def test_wrong_method_path_and_static_names(client):
    assert client.get("/v1/answer").status_code == 405
    assert client.get("/v1/nothing").status_code == 404
    for name in ("../registry.py", "..%2Fregistry.py", "index.html%00", "/etc/passwd"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 404 and "error" in response.json()
    assert_still_answers(client)


any_text = st.text(st.characters(exclude_categories=()), max_size=30)  # lone surrogates included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {}, optional={"question": json_values, "context": json_values, "adapter": json_values, "decoding": json_values}
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, fields, st.lists(fields, max_size=4), st.binary(max_size=40)))
def test_random_bodies_never_crash_the_server(client, body):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/v1/answer", content=content, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or isinstance(response.json()["error"], str)
