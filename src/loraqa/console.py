"""What loraqa says on the console while it works: one `loraqa: ...` line on stderr, flushed at once
(stdout carries results a user may pipe: tables, answers). Under torchrun or accelerate only rank 0
speaks (RANK is set by the launcher before any process group exists), so a job says each thing once.

How much is said is one setting, LORAQA_VERBOSITY (set by --quiet/--verbose, inherited by a sweep's
worker processes): "quiet" keeps warnings only, "verbose" lets the libraries' own warnings through.
Progress bars are drawn only on a terminal: a log file gets lines, never carriage returns or escapes.
"""

from __future__ import annotations

import os
import sys

VERBOSITY = "LORAQA_VERBOSITY"  # quiet | normal | verbose


def set_verbosity(level: str) -> None:
    """quiet, normal or verbose, for this process and the processes it starts."""
    os.environ[VERBOSITY] = level


def verbosity() -> str:
    return os.environ.get(VERBOSITY, "normal")


def say(message: str) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if verbosity() == "quiet" and not message.startswith("warning"):
        return
    line = f"loraqa: {message}"
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):  # a bar is drawn: write above it
        tqdm.tqdm.write(line, file=sys.stderr)
        sys.stderr.flush()
    else:
        print(line, file=sys.stderr, flush=True)


def bars_enabled() -> bool:
    """Progress bars only on a terminal, and not under --quiet."""
    return verbosity() != "quiet" and sys.stderr.isatty()
