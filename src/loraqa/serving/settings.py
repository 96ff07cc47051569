"""The server's limits and batching knobs, one visible place with the reason for each default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loraqa.errors import FlagError


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = 16  # questions per model call, and per request list; 1 answers one at a time
    batch_window_ms: float = 5.0  # the most a question waits for the company the last batch had (none: no wait)
    max_context_chars: int = 20_000  # ~ 5k tokens: longer contexts cost seconds and are rarely meant
    max_question_chars: int = 1_000  # SQuAD questions are < 200 characters
    max_pending: int = 1024  # questions waiting beyond this get 503 instead of queueing forever
    request_timeout_s: float = 60.0  # a request waiting longer gets 504 and leaves the queue
    max_beams: int = 8  # beamN above this would let one request hold the model for long
    read_timeout_s: float = 30.0  # a request's head, then its body, must arrive within this (slow clients)
    drain_timeout_s: float = 20.0  # on SIGTERM, what is queued gets this long; under Kubernetes' 30 s to SIGKILL
    api_key: str | None = field(default=None, repr=False)  # bearer token every /v1 endpoint needs (auth.py); None: open
    admin_token: str | None = field(default=None, repr=False)  # bearer token of POST/DELETE /v1/adapters (admin.py)
    adapter_root: str | None = None  # the only directory runtime adapters are loaded from

    @property
    def max_body_bytes(self) -> int:
        # a full batch of maximal items in JSON with room for escapes (\uXXXX is 6 bytes per char)
        return self.max_batch * (self.max_context_chars + self.max_question_chars) * 6 + 64_000


@dataclass(frozen=True)
class AdapterSource:
    """`--adapter NAME=DIR` as given on the command line."""

    name: str
    directory: Path


def parse_adapter_arg(text: str) -> AdapterSource:
    """`NAME=DIR` -> AdapterSource; the name is what clients send as `adapter`."""
    name, sep, directory = text.partition("=")
    name = name.strip()
    if not sep or not name or not directory.strip():
        raise FlagError("--adapter", f"expected NAME=DIR (e.g. squad=runs/A/adapter), got {text!r}")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise FlagError("--adapter", f"adapter name {name!r}: use letters, digits, '-', '_' or '.'")
    return AdapterSource(name, Path(directory.strip()))
