"""Run `loraqa` under torchrun, recording on ranks other than 0 every write-like filesystem call
(open for writing, mkdir, rename, remove, rmtree) under RECORD_UNDER into RECORD_DIR/rank-N.txt, and on
every rank whether `loraqa` left its process group standing at exit (RECORD_DIR/rank-N-group-left-up.txt).

Python's audit hooks see every such call made from Python (os.open, builtins.open, shutil, torch.save);
the test also checks the run directory's contents, for what native code might write."""

import atexit
import os
import sys

RANK = int(os.environ.get("RANK", "0"))
UNDER = os.path.realpath(os.environ["RECORD_UNDER"])
LOG = os.path.join(os.environ["RECORD_DIR"], f"rank-{RANK}.txt")
_WRITE_EVENTS = {
    "os.mkdir",
    "os.rename",
    "os.replace",
    "os.remove",
    "os.rmdir",
    "shutil.rmtree",
    "os.link",
    "os.symlink",
    "os.truncate",
}


def _record(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if not writing:
            return
        paths = [path]
    elif event in _WRITE_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        if isinstance(path, int):
            continue
        real = os.path.realpath(os.fsdecode(path))
        if real == UNDER or real.startswith(UNDER + os.sep):
            with open(LOG, "a", encoding="utf-8") as handle:  # outside UNDER: not recorded again
                handle.write(f"{event} {real}\n")


def _record_a_standing_process_group():
    """At exit, before the interpreter tears down: a process group still up here is one gloo's threads
    can abort the process over ("terminate called without an active exception", CI 2026-12-01)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with open(os.path.join(os.environ["RECORD_DIR"], f"rank-{RANK}-group-left-up.txt"), "w") as handle:
            handle.write("the process group was not destroyed before exit\n")


if RANK != 0:
    sys.addaudithook(_record)
atexit.register(_record_a_standing_process_group)  # runs after main() returns, on every rank

from loraqa.cli import main  # noqa: E402 (after the audit hook, which must see every write)

sys.exit(main(sys.argv[1:]))
