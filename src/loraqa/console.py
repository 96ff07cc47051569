"""What loraqa says on the console while it works: one `loraqa: ...` line on stderr, flushed at once
(stdout carries results a user may pipe: tables, answers). Under torchrun or accelerate only rank 0
speaks (RANK is set by the launcher before any process group exists), so a job says each thing once."""

from __future__ import annotations

import os
import sys


def say(message: str) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    print(f"loraqa: {message}", file=sys.stderr, flush=True)
