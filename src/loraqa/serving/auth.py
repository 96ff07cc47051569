"""Every request's id, bearer-token check, log line and metrics, in one pure-ASGI middleware.

- Request id: the client's `X-Request-Id` when it is a short plain token, else a new one; echoed in
  the response's `X-Request-Id` header and in the request's log line, so a client's report can be
  found in the server's log.
- `--api-key` (or LORAQA_API_KEY): every `/v1/...` endpoint needs `Authorization: Bearer KEY`, as
  vLLM's `--api-key` does; `/health`, `/metrics`, the page and the API docs stay open (probes and
  scrapers carry no key; the page's questions go to `/v1/answer`, which does need it). A missing or
  wrong key is a 401 before anything is read or queued. Keys are compared in constant time.
- Metrics: each response counted by endpoint, adapter (what the handler put in `request.state`) and
  status, its latency observed (metrics.py).

Pure ASGI rather than Starlette's BaseHTTPMiddleware: that one wraps `receive`, and the app must
see a client's disconnect on the real one (a hung-up client withdraws its questions).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid

from loraqa.serving.errors import error_body, send_json_error

LOG = logging.getLogger("loraqa.serve")
REQUEST_ID_HEADER = b"x-request-id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
KNOWN_ENDPOINTS = frozenset(
    {"/v1/answer", "/v1/adapters", "/v1/models", "/v1/chat/completions", "/v1/completions", "/health", "/metrics", "/"}
)


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def needs_key(method: str, path: str) -> bool:
    """Every /v1 endpoint; loading and unloading adapters check the admin token instead (admin.py)."""
    changes_adapters = method in ("POST", "DELETE") and (path == "/v1/adapters" or path.startswith("/v1/adapters/"))
    return path.startswith("/v1/") and not changes_adapters


def endpoint_label(path: str) -> str:
    """A fixed set of label values (never a client's arbitrary path: unbounded metric series)."""
    if path in KNOWN_ENDPOINTS:
        return path
    return "/v1/adapters/{name}" if path.startswith("/v1/adapters/") else "other"


class RequestGate:
    def __init__(self, app, api_key: str | None, metrics=None):
        self.app = app
        self.api_key = api_key
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = dict(scope.get("headers", ()))
        given = headers.get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())],
                }
                self._record(scope, status, started, request_id)
            await send(message)

        path = scope.get("path", "")
        if (
            self.api_key is not None
            and needs_key(scope.get("method", ""), path)
            and not token_matches(bearer_token(headers), self.api_key)
        ):
            return await _send_json(send_with_id, path, 401, "missing or wrong API key: send Authorization: Bearer KEY")
        await self.app(scope, receive, send_with_id)

    def _record(self, scope, status: int, started: float, request_id: str) -> None:
        seconds = time.perf_counter() - started
        adapter = str(scope.get("state", {}).get("adapter", ""))
        path = scope.get("path", "")
        if self.metrics is not None:
            self.metrics.observe_request(endpoint_label(path), adapter, status, seconds)
        LOG.info(
            "request %s %s %s %d %.1f ms%s",
            request_id,
            scope.get("method"),
            endpoint_label(path),
            status,
            1000 * seconds,
            f" adapter={adapter}" if adapter else "",
        )


async def _send_json(send, path: str, status: int, message: str) -> None:
    await send_json_error(send, error_body(path, status, message), status, (b"www-authenticate", b"Bearer"))
