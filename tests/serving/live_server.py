"""A registry without a model that counts what reaches it, and the real uvicorn server in a thread.

`CountingRegistry` answers the first word of the context and records the questions of every model
call, so tests count model calls instead of timing them; `hold()` blocks calls until `release()`.
`running(app, settings)` serves an app with `loraqa serve`'s own server (its protocol, timeouts and
graceful shutdown) on a free loopback port, so sockets can hang up, trickle or stall for real.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx

from loraqa.inference.answer import Answer
from loraqa.inference.offsets import answer_offsets
from loraqa.serving.server import graceful_server
from loraqa.serving.settings import ServeSettings

PATIENCE_S = 60  # generous: the machine may be loaded; only a broken server waits this long


class CountingRegistry:
    def __init__(self, fail_on: str | None = None):
        self.adapters = {"echo": None}
        self.default = "echo"
        self.calls: list[list[str]] = []  # the questions of each model call, in order
        self.fail_on = fail_on  # a model call holding a question with this text raises, like a tokenizer would
        self._gate = threading.Event()
        self._gate.set()

    def names(self) -> list[str]:
        return list(self.adapters)

    def describe(self) -> list[dict]:
        return [
            {
                "name": "echo",
                "default": True,
                "base_model": "none",
                "formulation": "extractive",
                "shares_base": False,
                "trainable_percent": None,
                "exact_match": None,
                "f1": None,
            }
        ]

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def batch_key(self, name: str):
        return ("adapter", name)  # one adapter: never mixed

    def answer_rows(self, names, records, decoding) -> list[Answer]:
        return self.answer(names[0], records, decoding)

    def answer(self, name, records, decoding) -> list[Answer]:
        self.calls.append([r.question for r in records])
        assert self._gate.wait(PATIENCE_S)
        if self.fail_on is not None and any(self.fail_on in r.question for r in records):
            raise TypeError("TextInputSequence must be str")
        return [self._echo(r) for r in records]

    @staticmethod
    def _echo(record) -> Answer:
        word = record.context.split()[0]
        return Answer(word, 1.0, *answer_offsets(record.context, word), False, id=record.id, question=record.question)

    def questions_run(self) -> list[str]:
        return [q for call in self.calls for q in call]


def wait_until(condition, what: str, timeout_s: float = PATIENCE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(app, settings: ServeSettings) -> Iterator[tuple[str, object]]:
    """(base url, uvicorn server) while the server runs in a thread; it is stopped on exit."""
    port = free_port()
    server = graceful_server(app, settings, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "the server started")
        assert server.started, "the server did not start"
        yield url, server
    finally:
        server.should_exit = True
        thread.join(PATIENCE_S)


def raw_request(port_url: str, body: bytes, path: str = "/v1/answer") -> socket.socket:
    """A socket that has sent one whole POST request (and not read the answer)."""
    host, port = port_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=PATIENCE_S)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=PATIENCE_S).json()
