"""A real full disk during a checkpoint save: one line naming the path and the cause, exit status 2,
the half-written checkpoint never trusted; once space is freed, `--resume` finishes the run with
the uninterrupted run's adapter.

The disk is a small tmpfs mounted for the test (root only, as CI runs; skipped with the reason
elsewhere). The child fills it right before its step-2 checkpoint save, through the product code
unchanged, leaving room for the files the save writes before a chosen one, so the disk fills in
that file's writer: Python's, safetensors', tokenizers' or torch.save's, each failing its own way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from run_helpers import one_line_error, tiny_overrides

FILLING_CHILD = """
import os, sys
from pathlib import Path
from loraqa.training.trainer import QATrainer
ballast, leave, cause = Path(os.environ["BALLAST"]), int(os.environ["LEAVE_BYTES"]), Path(os.environ["CAUSE"])
save = QATrainer._save_checkpoint
def filling(self, model, trial):
    if self.state.global_step == 2:
        info = os.statvfs(ballast.parent)
        with open(ballast, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, info.f_bavail * info.f_frsize - leave)
    try:
        return save(self, model, trial)
    except OSError as exc:  # what the library under the save raised, for the test to check
        cause.write_text(type(exc.__cause__).__name__)
        raise
QATrainer._save_checkpoint = filling
from loraqa.cli import main
sys.exit(main(sys.argv[1:]))
"""

# A tiny run on the shipped defaults (baseline on), checkpointing every step so step 2's save is a later one.
SETTINGS = ("training.max_steps=3", "training.save_steps=1")
PAGE = 4096  # tmpfs hands out whole pages


@pytest.fixture
def small_filesystem(tmp_path):
    """A fresh 8 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs the suite as root)")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def train(args: list[str], **env: str) -> subprocess.CompletedProcess:
    # The same thread count in every run: CPU float sums depend on it.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        **env,
    }
    code = (
        FILLING_CHILD if "BALLAST" in env else "import sys; from loraqa.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "train", *args], capture_output=True, text=True, env=env, timeout=600
    )


# The files a checkpoint save writes, in order (peft's, the tokenizer's, then Trainer's torch.save
# calls), and what each one's writer raises when the disk is full: Python's open, safetensors and
# tokenizers (Rust, "(os error 28)" in the message), torch.save (RuntimeError naming no errno).
WRITE_ORDER = (
    "README.md",
    "adapter_model.safetensors",
    "adapter_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "training_args.bin",
    "optimizer.pt",
)
RAISED_BY = {
    "adapter_model.safetensors": "SafetensorError",
    "tokenizer.json": "Exception",
    "optimizer.pt": "RuntimeError",
}


def room_before(checkpoint: Path, name: str) -> int:
    """Bytes on tmpfs for the files a save writes before `name`: the save fills the disk at `name`."""
    earlier = WRITE_ORDER[: WRITE_ORDER.index(name)]
    return sum(-(-(checkpoint / file).stat().st_size // PAGE) * PAGE for file in earlier)


@pytest.fixture(scope="module")
def straight(tiny_model_dir, qa_files, tmp_path_factory) -> Path:
    """The uninterrupted run, as a process like the others."""
    run = tmp_path_factory.mktemp("straight") / "run"
    finished = train(tiny_overrides(tiny_model_dir("gpt2"), qa_files, run, *SETTINGS))
    assert finished.returncode == 0, finished.stderr
    return run


@pytest.mark.parametrize("full_at", list(RAISED_BY))
def test_disk_full_during_a_checkpoint_save_is_one_line_then_resume_finishes(
    full_at, small_filesystem, straight, tiny_model_dir, qa_files, tmp_path
):
    run, ballast, cause = small_filesystem / "run", small_filesystem / "ballast", tmp_path / "cause"
    leave = room_before(straight / "checkpoints" / "checkpoint-3", full_at)
    args = tiny_overrides(tiny_model_dir("gpt2"), qa_files, run, *SETTINGS)
    failed = train(args, BALLAST=str(ballast), LEAVE_BYTES=str(leave), CAUSE=str(cause))

    assert failed.returncode == 2, failed.stderr
    line = one_line_error(failed.stderr)
    assert f"cannot write {run / 'checkpoints'}" in line and "No space left on device" in line, line
    assert "--resume" in line
    assert cause.read_text() == RAISED_BY[full_at]  # the disk filled where this case meant it to
    # Nothing half-written stays where resume would look: checkpoint-1 is whole, checkpoint-2 absent,
    # and the staged copy's room is given back.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-1"]
    assert not (run / "adapter").exists()

    ballast.unlink()
    resumed = train([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "checkpoint-1" in resumed.stderr
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (run / "adapter" / name).read_bytes() == (straight / "adapter" / name).read_bytes()
    assert (run / "predictions.jsonl").read_text() == (straight / "predictions.jsonl").read_text()
