"""The HTTP app: `create_app(registry, settings)` builds it around adapters loaded at start-up.

Routes: POST /v1/answer, GET /v1/adapters, GET /health, GET / (the web page), /docs (OpenAPI).
A request names an adapter by its served name and a decoding preset; both are checked against
fixed lists before anything runs, so no field a client sends reaches a path, a loader or code.
Every refusal is a 4xx whose JSON body is `{"error": "<one line>"}`; while the server shuts down
(`app.state.batcher.drain`) it is a 503 of the same shape.

A request's questions are its own: they are checked one request at a time before they are queued,
a client that hangs up withdraws them at once (they never reach the model), and a model failure
reaches only the question that caused it (batching.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Hashable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from loraqa.config.decoding import parse_decoding
from loraqa.data.records import QARecord
from loraqa.errors import ConfigError
from loraqa.inference.answer import Answer
from loraqa.serving.admin import add_admin_routes
from loraqa.serving.auth import RequestGate
from loraqa.serving.batching import Batcher, QueueFull, ShuttingDown
from loraqa.serving.errors import ServeError, error_response, is_openai_path, send_json_error
from loraqa.serving.metrics import CONTENT_TYPE, ServeMetrics
from loraqa.serving.openai_api import add_openai_routes
from loraqa.serving.registry import Registry
from loraqa.serving.schemas import (
    AdaptersResponse,
    AnswerBatch,
    AnswerRequest,
    AnswerResponse,
    ErrorResponse,
    HealthResponse,
)
from loraqa.serving.settings import ServeSettings
from loraqa.serving.streaming import StreamCancelled, TokenStream, streaming_into

STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}  # the page's files, by name only
ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 408, 413, 422, 503, 504)}


def create_app(registry: Registry, settings: ServeSettings = ServeSettings()) -> FastAPI:
    def run_batch(
        key: tuple[Hashable, str | None, TokenStream | None], items: list[tuple[str, QARecord]]
    ) -> list[tuple[Answer, float]]:
        """Items are (adapter, question) pairs of one batch key: one adapter, or a mixing group of one base."""
        began = time.perf_counter()
        names = [name for name, _ in items]
        gone = next((name for name in names if name not in registry.adapters), None)
        if gone is not None:  # unloaded (admin.py) while its questions waited; the batcher retries the rest alone
            raise ServeError(404, f"adapter {gone!r} was unloaded before this question was answered")
        records = [record for _, record in items]
        try:
            with streaming_into(_model(registry, names[0]) if key[2] else None, key[2]):
                answers = registry.answer_rows(names, records, key[1])  # in the worker thread, off the event loop
        except StreamCancelled:
            metrics.generations_stopped.inc()
            raise
        finished = time.perf_counter()
        metrics.observe_batch(names, finished - began)
        return [(found, finished) for found in answers]

    metrics = ServeMetrics(queue_depth=lambda: batcher.pending, loaded_adapters=lambda: len(registry.adapters))
    batcher = Batcher(
        run_batch,
        max_batch=settings.max_batch,
        window_s=settings.batch_window_ms / 1000,
        max_pending=settings.max_pending,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="loraqa",
        description="Extractive, seq2seq and causal question answering with LoRA adapters.",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.add_middleware(BodyReader, max_bytes=settings.max_body_bytes, timeout_s=settings.read_timeout_s)
    app.add_middleware(RequestGate, api_key=settings.api_key, metrics=metrics)  # outermost: before the body is read
    _add_error_handlers(app)

    def submit(
        request: Request, items: list[AnswerRequest], stream: TokenStream | None = None
    ) -> Awaitable[list[dict]]:
        """Check and queue the questions now (a ServeError if refused); await the result for the answers.
        With a `stream` (one item), its model call is its own and streams its tokens (streaming.py)."""
        started = time.perf_counter()
        _check_limits(items, settings)
        names = [_adapter_name(item, registry) for item in items]
        # Questions for adapters that can share a model call (registry.batch_key) share a key.
        keys = [
            (registry.batch_key(name), _decoding(item, settings), stream)
            for name, item in zip(names, items, strict=True)
        ]
        request.state.adapter = ",".join(sorted(set(names)))  # the metrics' and the log's label
        records = [QARecord(f"q{i}", item.context, item.question) for i, item in enumerate(items)]
        futures = []
        try:
            for key, name, record in zip(keys, names, records, strict=True):
                futures.append(batcher.submit(key, (name, record)))
        except (QueueFull, ShuttingDown) as exc:
            for future in futures:
                future.cancel()  # the request's other questions leave the queue with it
            busy = "shutting down" if isinstance(exc, ShuttingDown) else "busy"
            raise ServeError(503, f"server {busy}: {exc}; retry later") from None

        async def answers() -> list[dict]:
            rows = await _wait(request, futures, settings.request_timeout_s)
            return [_response(item, name, row, started) for item, name, row in zip(items, names, rows, strict=True)]

        return answers()

    @app.post("/v1/answer", response_model=AnswerResponse | list[AnswerResponse], responses=ERRORS)
    async def answer(request: Request, body: AnswerRequest | AnswerBatch = Body(...)):
        """Answer one question (an object) or several (a list, answered together)."""
        answers = await submit(request, body if isinstance(body, list) else [body])
        return answers if isinstance(body, list) else answers[0]

    @app.get("/v1/adapters", response_model=AdaptersResponse)
    async def adapters():
        """The adapters this server answers with (fixed at start-up)."""
        return {"adapters": registry.describe()}

    def token_stream(item: AnswerRequest) -> TokenStream | None:
        """A stream for this question when its answer can be sent token by token (streaming.py), else None."""
        if item.adapter not in registry.adapters or not _generates(registry, item.adapter):
            return None
        if item.min_confidence is not None or "beam" in (item.decoding or ""):
            return None
        return TokenStream(_tokenizer(registry, item.adapter), asyncio.get_running_loop())

    add_openai_routes(app, submit, registry.names, int(time.time()), token_stream)
    add_admin_routes(app, registry, settings.admin_token, settings.adapter_root)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/health", response_model=HealthResponse)
    async def health():
        return {"status": "ok", "adapters": len(registry.adapters), "pending": batcher.pending, "busy": batcher.busy}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(_static_text("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in STATIC_FILES:  # a fixed list: no path a client sends is opened
            raise ServeError(404, f"no static file {name!r}")
        return Response(_static_text(name), media_type=STATIC_FILES[name])

    return app


def _model(registry: Registry, name: str):
    return registry.adapters[name].ready.model


def _generates(registry: Registry, name: str) -> bool:
    return registry.adapters[name].ready.spec.formulation.generates  # answers come from generate()


def _tokenizer(registry: Registry, name: str):
    return registry.adapters[name].ready.tokenizer


def _check_limits(items: list[AnswerRequest], settings: ServeSettings) -> None:
    if len(items) > settings.max_batch:
        raise ServeError(413, f"{len(items)} questions in one request; the limit is {settings.max_batch} (--max-batch)")
    for index, item in enumerate(items):
        where = f"item {index}: " if len(items) > 1 else ""
        if len(item.context) > settings.max_context_chars:
            raise ServeError(
                413,
                f"{where}context has {len(item.context)} characters; the limit is {settings.max_context_chars} (--max-context-chars)",
            )
        if len(item.question) > settings.max_question_chars:
            raise ServeError(
                413, f"{where}question has {len(item.question)} characters; the limit is {settings.max_question_chars}"
            )


def _adapter_name(item: AnswerRequest, registry: Registry) -> str:
    name = registry.default if item.adapter is None else item.adapter
    if name not in registry.adapters:
        served = ", ".join(registry.names())
        raise ServeError(404, f"unknown adapter {name[:80]!r}; this server has: {served}")
    return name


def _decoding(item: AnswerRequest, settings: ServeSettings) -> str | None:
    if item.decoding is None:
        return None
    try:
        kwargs = parse_decoding(item.decoding[:40])
    except ConfigError as exc:
        raise ServeError(422, exc.problem) from None
    if kwargs.get("num_beams", 1) > settings.max_beams:
        raise ServeError(422, f"decoding {item.decoding!r}: at most {settings.max_beams} beams on this server")
    return item.decoding.strip()


async def _wait(request: Request, futures: list[asyncio.Future], timeout_s: float) -> list[tuple[Answer, float]]:
    """All answers; 504 after the timeout, 503 when dropped by a shutdown. A client that hangs up
    withdraws its questions the moment the server sees the connection close."""
    hangup = asyncio.ensure_future(_hangup(request))
    deadline = time.perf_counter() + timeout_s
    pending = set(futures)
    try:
        while pending:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise ServeError(504, f"no answer within {timeout_s:g} s; the questions were withdrawn")
            done, pending = await asyncio.wait(
                pending | {hangup}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if hangup in done:
                raise ServeError(499, "client disconnected")
            pending.discard(hangup)
    finally:
        hangup.cancel()
        for future in futures:
            future.cancel()  # no-op on answered ones; the rest leave the queue
    dropped = [f.exception() for f in futures if isinstance(f.exception(), ShuttingDown)]
    if dropped:
        raise ServeError(503, f"server shutting down: {dropped[0]}; retry later")
    return [f.result() for f in futures]


async def _hangup(request: Request) -> None:
    """Return when the client disconnects. The body has been read, so the server's next message
    is the disconnect (uvicorn also resumes reading the socket for it, which is how it sees it)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _response(item: AnswerRequest, adapter: str, row: tuple[Answer, float], started: float) -> dict:
    found, finished = row
    found = found.withheld_below(item.min_confidence)  # per request: a batch mixes requests' thresholds
    return {
        "answer": found.text,
        "confidence": found.confidence,
        "start": found.start,
        "end": found.end,
        "no_answer": found.no_answer,
        "abstained": found.abstained,
        "adapter": adapter,
        "latency_ms": round(1000 * (finished - started), 2),
    }


def _static_text(name: str) -> str:
    return resources.files("loraqa.serving").joinpath("static", name).read_text(encoding="utf-8")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError):
        return error_response(request.url.path, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        if is_openai_path(request.url.path):
            return error_response(request.url.path, *_openai_validation_message(exc.errors()))
        return error_response(request.url.path, *_validation_message(exc.errors(), exc.body))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        return error_response(request.url.path, 500, f"internal error: {type(exc).__name__}: {str(exc)[:200]}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(request.url.path, exc.status_code, str(exc.detail))


def _openai_validation_message(errors: list[dict]) -> tuple[int, str]:
    """OpenAI answers a malformed request with 400 and the field."""
    if not errors:
        return 400, "invalid request"
    error = errors[0]
    if error.get("type") == "json_invalid":
        return 400, f"body is not valid JSON: {error.get('ctx', {}).get('error', error.get('msg'))}"
    field = ".".join(str(part) for part in error.get("loc", ())[1:]) or "body"
    return 400, f"{field}: {error.get('msg', 'invalid').removeprefix('Value error, ')}"


def _validation_message(errors: list[dict], body) -> tuple[int, str]:
    """One line from pydantic's errors; for the object-or-list body, the branch the client meant."""
    if not errors:
        return 422, "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return 400, f"body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
        return 422, 'empty body: send a JSON object {"question", "context"} or a list of them'
    branch = "list[" if isinstance(body, list) else "AnswerRequest"
    meant = [e for e in errors if len(e.get("loc", ())) > 1 and str(e["loc"][1]).startswith(branch)] or errors
    error = meant[0]
    where = [str(part) for part in error.get("loc", ())[2:]]
    if isinstance(body, list) and where:
        where[0] = f"item {where[0]}"
    if not isinstance(body, (dict, list)) and len(error.get("loc", ())) <= 2:
        return 422, 'body must be a JSON object {"question", "context"} or a list of them'
    field = ".".join(where) if where else "body"
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field (allowed: question, context, adapter, decoding)"
    return 422, f"{field}: {message}"


class BodyReader:
    """Read the whole body before the app runs, bounded in size and time (pure ASGI middleware).

    A declared or received body over `max_bytes` gets 413 before it is read whole; a body that has
    not arrived `timeout_s` after the request's head (a client sending a byte a second) gets 408 and
    the connection is closed. The app then reads the body from memory.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _send_error(send, 413, f"request body over {self.max_bytes} bytes")
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except _TooLarge:
            return await _send_error(send, 413, f"request body over {self.max_bytes} bytes")
        except asyncio.TimeoutError:
            return await _send_error(send, 408, f"request body not received within {self.timeout_s:g} s")
        except _Disconnected:
            return None  # the client left before its body was complete: nothing to answer
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive) -> bytes:
        chunks, received = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _send_error(send, status: int, message: str) -> None:
    """A JSON error sent by hand (outside the app); it closes the connection, whose body is unread."""
    await send_json_error(send, {"error": message}, status, (b"connection", b"close"))


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass
