"""Where a benchmark result came from: the provenance every `bench/results/` file records.

A results file is a record only if it says which code produced it and how. `provenance(argv)`
gathers that; `stamped(data, argv)` puts it at the top of what a bench writes.

Schema versions (`schema_version` in each file; `bench/results/INDEX.md` lists the files):
  1  files written before this module (2026-11-24 and 2026-11-25): `date`, `command` and a
     `machine` block, written by each bench in its own way; no commit, no dirty flag. A version-1
     file has no `schema_version` key at all.
  2  every writer adds these keys: `schema_version`, `git_commit`, `git_dirty`, `command`, `date`
     (ISO, when the file was written) and `machine` (`cpu_count`, `torch`, `allocator`), which a
     bench may extend with its own details.

Nothing here may stop a benchmark from writing its result: outside a git repository, without git,
or without torch, the value is None.
"""

from __future__ import annotations

import datetime
import os
import shlex
from pathlib import Path

from loraqa.runs.provenance import git

SCHEMA_VERSION = 2
REPO_ROOT = Path(__file__).resolve().parents[1]
# Results are written into the tree they describe; a new results file must not mark its own run dirty.
RESULTS_DIR = "bench/results"


def provenance(argv: list[str], *, root: str | os.PathLike | None = None) -> dict:
    """The commit, dirty flag, command, date and machine of a run started with `argv`.

    `root` is the working tree whose state is recorded (default: this repository). `git_dirty` is
    True when `git status --porcelain` lists anything outside `bench/results/` (untracked files
    included: a new module changes what runs), None when `root` is not in a git repository.
    `command` is `argv` shell-quoted, its first element relative to `root` when inside it, so a
    record carries no machine paths.
    """
    root = Path(root) if root is not None else REPO_ROOT
    return {
        "schema_version": SCHEMA_VERSION,
        "git_commit": git(root, "rev-parse", "HEAD"),
        "git_dirty": _dirty(root),
        "command": _command(argv, root),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(),
    }


def stamped(data: dict, argv: list[str], *, root: str | os.PathLike | None = None) -> dict:
    """`data` with the provenance of `argv` first: its keys win, except `machine`, which is merged.

    A bench's own `machine` details (CPU model, library versions) are kept next to the common ones.
    A `date` or `command` the bench wrote itself is replaced, so every schema-2 file means the same
    by them.
    """
    record = provenance(argv, root=root)
    merged_machine = {**record["machine"], **data.get("machine", {})}
    return {**record, **{k: v for k, v in data.items() if k not in record}, "machine": merged_machine}


def _dirty(root: Path) -> bool | None:
    status = git(root, "status", "--porcelain", "--", ".", f":(exclude,top){RESULTS_DIR}")
    return None if status is None else status != ""


def _command(argv: list[str], root: Path) -> str:
    parts = [str(a) for a in argv]
    first = Path(parts[0]) if parts else None
    if first is not None and (first.is_absolute() or first.exists()):  # a script, not e.g. "-c"
        try:
            parts[0] = str(first.resolve().relative_to(root.resolve()))
        except ValueError:
            pass  # outside the tree: as given
    return shlex.join(parts)


def _machine() -> dict:
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    try:
        from loraqa.allocator import active_allocator

        allocator = active_allocator()
    except ImportError:
        allocator = "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else None
    return {"cpu_count": os.cpu_count(), "torch": torch_version, "allocator": allocator}
