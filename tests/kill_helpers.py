"""Real `loraqa` processes stopped at a named point and killed there (kill_hooks/sitecustomize.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

HOOKS = str(Path(__file__).parent / "kill_hooks")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def start_loraqa(
    argv: list[str],
    log: Path,
    hang_at: str | None = None,
    markers: Path | None = None,
    run: str | None = None,
    *,
    sigint=signal.SIG_DFL,
) -> subprocess.Popen:
    """`python -m loraqa ARGV` in its own session (its workers too), stopping at `hang_at` (only in
    the run directory named `run`, when given) after writing a marker into `markers`.

    It trains on this process's torch thread count, as the in-process runs it is compared with do:
    CPU float sums depend on that count. Its SIGINT disposition is set (`sigint`), not inherited: a
    suite started in the background (`cmd &` in a script, nohup) ignores SIGINT, and so would every
    child; `signal.SIG_IGN` starts it the way `nohup loraqa sweep ... &` does."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([HOOKS, SRC, *sys.path]),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    for name in ("LORAQA_TEST_HANG_AT", "LORAQA_TEST_HANG_MARKERS", "LORAQA_TEST_HANG_RUN"):
        env.pop(name, None)
    if hang_at is not None:
        markers.mkdir(parents=True, exist_ok=True)
        env.update(LORAQA_TEST_HANG_AT=hang_at, LORAQA_TEST_HANG_MARKERS=str(markers))
        if run is not None:
            env["LORAQA_TEST_HANG_RUN"] = run
    return subprocess.Popen(
        [sys.executable, "-m", "loraqa", *argv],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


def wait_until_stopped(
    process: subprocess.Popen, markers: Path, log: Path, count: int = 1, timeout: float = 900
) -> None:
    """Until `count` processes (the command or its workers) stand at the point; fails if the command
    ends first. Each marker is written at the point itself, so the wait implies where they are."""
    deadline = time.monotonic() + timeout
    while len(list(markers.iterdir())) < count:
        if process.poll() is not None:
            raise AssertionError(f"loraqa exited ({process.returncode}) before the point:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no stop at the point within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def kill(process: subprocess.Popen, how: signal.Signals) -> None:
    """SIGKILL and SIGTERM as `kill -9 -PGID` / `kill -PGID` would (the command and any workers);
    SIGINT as Ctrl-C in a terminal (the whole foreground group). Waits until every one is gone."""
    os.killpg(process.pid, how)
    process.wait(timeout=300)
    deadline = time.monotonic() + 300
    while _group_alive(process.pid):  # workers of a sweep end after their parent
        assert time.monotonic() < deadline, "a process of the killed command is still running"
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group: a container's init may not reap."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while listed
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False
