"""OpenAI-compatible endpoints on the same app: GET /v1/models, POST /v1/chat/completions, POST /v1/completions.

`model` names a served adapter (GET /v1/models lists them). A question and its context reach the
same queue as POST /v1/answer's, so answers, batching, limits and hang-ups behave the same:
- chat: the context is the system message(s) (joined by a blank line), or a `context` field (the
  openai client's `extra_body={"context": ...}`), which wins; the question is the last user message.
- completions: `prompt` is the question when a `context` field is given; otherwise it is laid out as
  `Context: <context>\\nQuestion: <question>` (the last line starting with "Question:" is the question).
The answer is `choices[0].message.content` (`choices[0].text` for completions). loraqa's extras
(confidence, start/end character offsets, no_answer, abstained, latency_ms) are in `choices[0].loraqa`,
which plain clients ignore. Extra fields `decoding` and `min_confidence` are as for /v1/answer;
OpenAI's sampling fields (temperature, top_p, max_tokens, ...) are accepted and ignored: an answer is
decoded with the server's settings or `decoding`.

With `stream: true` the answer comes as server-sent events in OpenAI's chunk format: a role chunk,
the answer's text, a final chunk with `finish_reason` and the extras (with the whole `answer`), then
`data: [DONE]`. A generative adapter's answer is sent token by token as it is generated (its own
model call, streaming.py); an extractive one's in one chunk. A client that disconnects withdraws its
queued question, as on /v1/answer, and stops a generation under way.
Errors use OpenAI's shape (errors.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Body, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loraqa.serving.errors import ServeError, error_body
from loraqa.serving.schemas import AnswerRequest
from loraqa.serving.streaming import TokenStream

QUESTION_PREFIX = "Question:"
CONTEXT_PREFIX = "Context:"
# app.py's submit: checks and queues the questions at once (ServeError if refused), returns their answers' awaitable
Submit = Callable[..., Awaitable[list[dict]]]  # (request, items, stream=None)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict] | None = None


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send many fields this server ignores

    model: str
    stream: bool = False
    n: int = 1
    context: str | None = Field(None, description="the text the answer is taken from (extra_body)")
    decoding: str | None = Field(None, description="greedy (default), beamN, topkK, toppP or tempT (extra_body)")
    min_confidence: float | None = Field(None, description="withhold an answer below this confidence (extra_body)")


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Common):
    prompt: str | list[str]


def add_openai_routes(
    app: FastAPI,
    submit: Submit,
    model_names: Callable[[], list[str]],
    created: int,
    token_stream: Callable[[AnswerRequest], TokenStream | None],
) -> None:
    @app.get("/v1/models")
    async def models():
        """The served adapters as OpenAI models (`model` in the completion requests)."""
        return {"object": "list", "data": [_model(name, created) for name in model_names()]}

    @app.get("/v1/models/{name}")
    async def model(name: str):
        if name not in model_names():
            raise ServeError(404, f"the model {name[:80]!r} does not exist; GET /v1/models lists them")
        return _model(name, created)

    @app.post("/v1/chat/completions")
    async def chat(request: Request, body: ChatRequest = Body(...)):
        question, context = _chat_question(body)
        return await _complete(request, submit, model_names, token_stream, body, question, context, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionRequest = Body(...)):
        question, context = _prompt_question(body)
        return await _complete(request, submit, model_names, token_stream, body, question, context, chat=False)


def _model(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "loraqa"}


async def _complete(
    request: Request, submit: Submit, model_names, token_stream, body: _Common, question: str, context: str, chat: bool
):
    if body.n != 1:
        raise ServeError(400, f"n={body.n}: this server gives one answer per request (n=1)")
    try:
        item = AnswerRequest(
            question=question,
            context=context,
            adapter=body.model,
            decoding=body.decoding,
            min_confidence=body.min_confidence,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error.get("loc", ())) or "request"
        raise ServeError(400, f"{field}: {error.get('msg', 'invalid').removeprefix('Value error, ')}") from None
    if body.model not in model_names():
        raise ServeError(404, f"the model {body.model[:80]!r} does not exist; GET /v1/models lists them")
    stream = token_stream(item) if body.stream else None
    answers = submit(request, [item], stream)  # refusals (limits, decoding, busy) are HTTP errors, before any stream
    if body.stream:
        return StreamingResponse(_stream(answers, stream, item.adapter, chat), media_type="text/event-stream")
    result = (await answers)[0]
    return _completion(result, body.model, chat)


def _completion(result: dict, model: str, chat: bool) -> dict:
    text, extras = answer_fields(result)
    choice = {"index": 0, "finish_reason": "stop", "logprobs": None, "loraqa": extras}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": _id(chat),
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": None,
    }


def answer_fields(result: dict) -> tuple[str, dict]:
    """(answer text, loraqa extras) from one /v1/answer result: the one place that reads its fields."""
    extras = {k: result[k] for k in ("confidence", "start", "end", "no_answer", "abstained", "latency_ms")}
    return result["answer"], extras


async def _stream(answers: Awaitable[list[dict]], stream: TokenStream | None, model: str, chat: bool):
    """SSE chunks: the role, the answer's text (token by token with a `stream`, else at once), a last chunk
    with finish_reason and the extras, `[DONE]`. An error after the stream started is an OpenAI error event
    (the status line is gone by then). Leaving early (the client went away) cancels the stream's generation."""
    ident, created = _id(chat), int(time.time())

    def chunk(choice: dict) -> str:
        kind = "chat.completion.chunk" if chat else "text_completion"
        body = {"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def content(text: str) -> str:
        return chunk(
            {"index": 0, "delta": {"content": text}, "finish_reason": None}
            if chat
            else {"index": 0, "text": text, "finish_reason": None, "logprobs": None}
        )

    task = asyncio.ensure_future(answers)
    try:
        if chat:
            yield chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        sent = ""
        async for delta in _deltas(stream, task):
            sent += delta
            yield content(delta)
        try:
            result = task.result()[0]
        except Exception as exc:  # noqa: BLE001 - the status line is sent: the error goes in the stream
            yield f"data: {json.dumps(_stream_error(exc))}\n\n"
            yield "data: [DONE]\n\n"
            return
        text, extras = answer_fields(result)
        if text.startswith(sent) and len(text) > len(sent):
            yield content(text[len(sent) :])
        last = {"index": 0, "finish_reason": "stop", "loraqa": {**extras, "answer": text}}
        yield chunk({**last, "delta": {}} if chat else {**last, "text": "", "logprobs": None})
        yield "data: [DONE]\n\n"
    finally:
        if stream is not None:
            stream.cancel()  # no-op once answered; else the next token stops generate()
        task.cancel()


def _stream_error(exc: Exception) -> dict:
    if isinstance(exc, ServeError):
        status, message = exc.status, exc.message
    else:
        status, message = 500, f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
    return error_body("/v1/chat/completions", status, message)


async def _deltas(stream: TokenStream | None, task: asyncio.Future):
    """The stream's text deltas until the model call is over (then any left in the queue)."""
    if stream is None:
        await asyncio.wait({task})
        return
    while not task.done():
        get = asyncio.ensure_future(stream.deltas.get())
        done, _ = await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            yield get.result()
        else:
            get.cancel()
    while not stream.deltas.empty():
        yield stream.deltas.get_nowait()


def _id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def _text(content: str | list[dict] | None) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def _chat_question(body: ChatRequest) -> tuple[str, str]:
    users = [m for m in body.messages if m.role == "user"]
    if not users:
        raise ServeError(400, "messages: no user message (the last one is the question)")
    question = _text(users[-1].content)
    context = body.context
    if context is None:
        context = "\n\n".join(_text(m.content) for m in body.messages if m.role in ("system", "developer"))
    if not context.strip():
        raise ServeError(400, "no context: send it as a system message or as a `context` field (extra_body)")
    return question, context


def _prompt_question(body: CompletionRequest) -> tuple[str, str]:
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise ServeError(400, f"prompt: {len(prompts)} prompts; send one per request")
    prompt = prompts[0]
    if body.context is not None:
        return prompt, body.context
    head, sep, question = prompt.rpartition("\n" + QUESTION_PREFIX)
    if not sep or not head.lstrip().startswith(CONTEXT_PREFIX):
        raise ServeError(
            400, f"prompt: expected '{CONTEXT_PREFIX} <context>\\n{QUESTION_PREFIX} <question>' or a `context` field"
        )
    return question.strip(), head.lstrip().removeprefix(CONTEXT_PREFIX).strip()
