"""What Ctrl-C leaves behind, said in the words a user needs next: the last checkpoint kept and the
exact command that continues from it (`--resume`), or that re-running the command finishes the job."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from loraqa.errors import LoraqaError

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Commands that pick up where they stopped when run again as they were (sweeps/, experiments/compare.py).
_RERUN_FINISHES = {"sweep": "the sweep", "compare": "the comparison"}


def interruption_notes(
    command: str, argv: list[str], config: str | None = None, overrides: list[str] = ()
) -> list[str]:
    """The lines to print after `loraqa interrupted`, for `loraqa ARGV` (COMMAND its first word)."""
    if command in _RERUN_FINISHES:
        return [f"run the same command again to finish {_RERUN_FINISHES[command]}: {shlex.join(['loraqa', *argv])}"]
    if command != "train":
        return []
    try:
        from loraqa.config.loader import load_config
        from loraqa.runs.rundir import RunDirectory

        run = RunDirectory(load_config(config, list(overrides)).run_dir)
    except LoraqaError:
        return []  # stopped before the config was even read: the same command starts over
    if not run.holds_run():
        return []  # the run directory was never claimed: the same command starts over
    resume = shlex.join(["loraqa", *[item for item in argv if item not in ("--overwrite", "--resume")], "--resume"])
    checkpoint = newest_checkpoint(run.checkpoints)
    if checkpoint is None:
        return [f"no checkpoint kept yet (training.save_steps); continue with: {resume}"]
    return [f"last checkpoint kept: {checkpoint}", f"continue from it with: {resume}"]


def newest_checkpoint(folder: Path) -> Path | None:
    """The `checkpoint-N` with the largest N (resuming checks it is complete, and falls back)."""
    steps = [int(m[1]) for p in folder.glob("checkpoint-*") if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return folder / f"checkpoint-{max(steps)}" if steps else None
