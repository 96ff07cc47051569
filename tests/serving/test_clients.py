"""Clients that hang up, trickle, stall or send a poison question, against the real uvicorn server
(`live_server.running`) with a registry that counts what reaches the model: none of them costs a
model call, holds a connection or changes another client's answer."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx
from live_server import PATIENCE_S, CountingRegistry, health, raw_request, running, wait_until

from loraqa.serving.app import create_app
from loraqa.serving.settings import ServeSettings


def ask(url: str, question: str, results: dict) -> None:
    body = {"question": question, "context": f"{question} is the answer."}
    results[question] = httpx.post(f"{url}/v1/answer", json=body, timeout=PATIENCE_S)


def test_hung_up_clients_questions_never_reach_the_model():
    registry = CountingRegistry()
    registry.hold()
    settings = ServeSettings(max_batch=4, batch_window_ms=0)
    with running(create_app(registry, settings), settings) as (url, _):
        results: dict = {}
        first = threading.Thread(target=ask, args=(url, "first", results))
        first.start()
        wait_until(lambda: registry.calls == [["first"]], "the first question holds the model")
        quitters = [raw_request(url, json.dumps({"question": f"quit{i}", "context": "x y"}).encode()) for i in range(6)]
        stayers = [threading.Thread(target=ask, args=(url, f"stay{i}", results)) for i in range(3)]
        for thread in stayers:
            thread.start()
        wait_until(lambda: health(url)["pending"] == 9, "all nine questions wait in the queue")
        for sock in quitters:
            sock.close()  # hang up before the answer
        wait_until(lambda: health(url)["pending"] == 3, "the hung-up clients' questions left the queue")
        registry.release()
        for thread in [first, *stayers]:
            thread.join(PATIENCE_S)
    assert {q: r.status_code for q, r in results.items()} == {q: 200 for q in ["first", "stay0", "stay1", "stay2"]}
    assert sorted(registry.questions_run()) == ["first", "stay0", "stay1", "stay2"]  # no quitter reached the model


def test_a_failing_question_fails_alone_and_its_batch_neighbours_are_answered():
    registry = CountingRegistry(fail_on="POISON")
    registry.hold()
    settings = ServeSettings(max_batch=16, batch_window_ms=50)
    questions = ["first"] + [f"good{i}" if i % 4 else f"POISON{i}" for i in range(12)]
    with running(create_app(registry, settings), settings) as (url, _):
        results: dict = {}
        threads = [threading.Thread(target=ask, args=(url, q, results)) for q in questions]
        threads[0].start()
        wait_until(lambda: registry.calls == [["first"]], "the first question holds the model")
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: health(url)["pending"] == 12, "the other twelve wait together")
        registry.release()
        for thread in threads:
            thread.join(PATIENCE_S)
    good = [q for q in questions if "POISON" not in q]
    assert [q for q in good if results[q].status_code == 200 and results[q].json()["answer"] == q] == good
    for question in set(questions) - set(good):
        response = results[question]
        assert response.status_code == 500 and "TypeError" in response.json()["error"]
    assert len(registry.calls[1]) == 12  # they did share one model call, which failed, then went one by one
    assert sorted(registry.calls[2:]) == sorted([q] for q in questions[1:])


def _closed_by_server(sock: socket.socket, trickle: bytes) -> bool:
    """Send `trickle` a byte at a time until the server closes the connection; True if it did."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + PATIENCE_S
    for byte in trickle:
        if time.monotonic() > deadline:
            return False
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue  # still open: nothing to read yet
        except OSError:  # reset by the server
            return True
    return False


def test_a_head_trickled_slower_than_the_read_timeout_is_cut_off():
    settings = ServeSettings(read_timeout_s=1.0)
    with running(create_app(CountingRegistry(), settings), settings) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            started = time.monotonic()
            endless_head = b"POST /v1/answer HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000
            assert _closed_by_server(sock, endless_head)
            assert time.monotonic() - started >= 1.0
        with socket.create_connection((host, int(port))) as silent:  # sends nothing at all
            silent.settimeout(PATIENCE_S)
            assert silent.recv(1) == b""
        assert health(url)["status"] == "ok"  # and everyone else is served


def test_a_body_trickled_slower_than_the_read_timeout_gets_408():
    settings = ServeSettings(read_timeout_s=1.0)
    with running(create_app(CountingRegistry(), settings), settings) as (url, _):
        body = json.dumps({"question": "q", "context": "c " * 5000}).encode()
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=PATIENCE_S) as sock:
            head = f"POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode())
            sock.settimeout(0.2)
            answer = b""
            deadline = time.monotonic() + PATIENCE_S
            for byte in body:
                assert time.monotonic() < deadline
                sock.sendall(bytes([byte]))
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
                break
            answer = _whole_response(sock, answer)
        status, _, rest = answer.partition(b"\r\n")
        assert b" 408 " in status, answer
        assert "not received within 1 s" in json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]


def _whole_response(sock, received: bytes) -> bytes:
    """Read on until the head and its Content-Length of body are in: one recv may return only part."""
    sock.settimeout(PATIENCE_S)
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_drain_that_times_out_answers_every_held_request_with_a_json_503():
    registry = CountingRegistry()
    registry.hold()
    settings = ServeSettings(max_batch=1, batch_window_ms=0, drain_timeout_s=0.5)
    questions = ["running", "queued0", "queued1", "queued2"]
    with running(create_app(registry, settings), settings) as (url, server):
        results: dict = {}
        threads = [threading.Thread(target=ask, args=(url, q, results)) for q in questions]
        threads[0].start()
        wait_until(lambda: registry.calls == [["running"]], "the first question holds the model")
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: health(url)["pending"] == 3, "three questions wait behind it")
        server.handle_exit(signal.SIGTERM, None)  # what the signal calls (signals reach only the main thread)
        for thread in threads:
            thread.join(PATIENCE_S)
        registry.release()  # the model call ends long after its request was answered
    for question in questions:
        response = results[question]
        assert response.status_code == 503, response.text
        assert "shutting down" in response.json()["error"]
    assert registry.calls == [["running"]]  # the dropped questions never reached the model
