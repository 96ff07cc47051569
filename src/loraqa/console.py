"""One-line progress messages on stderr, prefixed `loraqa:`; stdout stays for tables and answers."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    print(f"loraqa: {message}", file=sys.stderr, flush=True)
