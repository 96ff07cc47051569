"""Error bodies: one line, in the shape the endpoint's clients expect.

loraqa's own endpoints answer `{"error": "<one line>"}`. The OpenAI-compatible ones (openai_api.py)
answer OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, which the `openai` client
turns into its typed exceptions (NotFoundError, AuthenticationError, ...) with the message.
"""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse

OPENAI_PREFIXES = ("/v1/models", "/v1/chat/completions", "/v1/completions")
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    499: "invalid_request_error",
}


def one_line(message: str) -> str:
    """Whitespace folded; characters UTF-8 cannot carry (a client's lone surrogate quoted back) escaped,
    so writing the answer can never fail."""
    return " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIXES)


def error_body(path: str, status: int, message: str) -> dict:
    line = one_line(message)
    if not is_openai_path(path):
        return {"error": line}
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": line, "type": kind, "param": None, "code": status}}


def error_response(path: str, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, status, message), status_code=status, headers=headers)


class ServeError(Exception):
    """A refusal the client can act on: its status and one line."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


async def send_json_error(send, body: dict, status: int, *headers: tuple[bytes, bytes]) -> None:
    """A JSON error sent on a raw ASGI `send`, by middleware that answers before (or outside) the app."""
    encoded = json.dumps(body).encode()
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*start_headers, *headers]})
    await send({"type": "http.response.body", "body": encoded})
