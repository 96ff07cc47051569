"""kill -9 in the middle of `loraqa train`, then `--resume`: the run finishes with exactly the metrics
of an uninterrupted run (same seed, CPU, tiny model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loraqa.training.pipeline import run_training
from run_helpers import tiny_config, tiny_overrides

# The child slows each step down so the test can kill it mid-run; the product code is unchanged.
CHILD = """
import sys, time
from loraqa.training.trainer import QATrainer
step = QATrainer.training_step
def slow(self, *a, **k):
    time.sleep(0.4)
    return step(self, *a, **k)
QATrainer.training_step = slow
from loraqa.cli import main
sys.exit(main(sys.argv[1:]))
"""

SETTINGS = ("training.max_steps=9", "training.save_strategy=steps", "training.save_steps=1",
            "evaluation.baseline=false", "lora.lora_dropout=0.1")  # fmt: skip


def scores(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("seconds", "questions_per_second", "adapter")}


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_kill_9_then_resume_equals_uninterrupted(family, tiny_model_dir, qa_files, tmp_path):
    model = tiny_model_dir(family)
    run_training(tiny_config(model, qa_files, tmp_path / "straight", *SETTINGS))

    crashed = tmp_path / "crashed"
    args = ["train", *tiny_overrides(model, qa_files, crashed, *SETTINGS)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    deadline = time.monotonic() + 120
    while not (crashed / "checkpoints" / "checkpoint-4").exists():
        assert child.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (crashed / "adapter").exists()

    run_training(tiny_config(model, qa_files, crashed, *SETTINGS), resume=True)
    assert scores(crashed) == scores(tmp_path / "straight")
    straight = json.loads((tmp_path / "straight" / "predictions.jsonl").read_text().splitlines()[0])
    resumed = json.loads((crashed / "predictions.jsonl").read_text().splitlines()[0])
    assert resumed["confidence"] == straight["confidence"]


def test_resume_without_a_run_is_refused(tiny_model_dir, qa_files, tmp_path):
    from loraqa.errors import RunDirError

    with pytest.raises(RunDirError, match="no run to resume"):
        run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, tmp_path / "none", *SETTINGS), resume=True)


def test_a_crashed_half_written_checkpoint_is_never_resumed(tiny_model_dir, qa_files, tmp_path):
    from loraqa.training.trainer import last_complete_checkpoint

    checkpoints = tmp_path / "checkpoints"
    (checkpoints / ".staging" / "checkpoint-3").mkdir(parents=True)
    (checkpoints / "checkpoint-2").mkdir()
    (checkpoints / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (checkpoints / "checkpoint-5").mkdir()  # no state: not complete
    assert last_complete_checkpoint(str(checkpoints)) == str(checkpoints / "checkpoint-2")
    assert not (checkpoints / ".staging").exists()


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    import errno

    from loraqa.errors import RunDirError
    from loraqa.training.trainer import QATrainer, last_complete_checkpoint

    original = QATrainer._save_optimizer_and_scheduler

    def fills_disk(self, output_dir):
        if self.state.global_step == 3:
            (Path(output_dir) / "optimizer.pt").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(output_dir) / "optimizer.pt"))
        return original(self, output_dir)

    monkeypatch.setattr(QATrainer, "_save_optimizer_and_scheduler", fills_disk)
    run = tmp_path / "run"
    with pytest.raises(RunDirError, match="No space left on device.*--resume"):
        run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, run, *SETTINGS))
    assert last_complete_checkpoint(str(run / "checkpoints")) == str(run / "checkpoints" / "checkpoint-2")
    monkeypatch.setattr(QATrainer, "_save_optimizer_and_scheduler", original)
    run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, run, *SETTINGS), resume=True)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


FINISHED = ("training.max_steps=3", "training.save_strategy=steps", "training.save_steps=1",
            "training.lr_scheduler_type=constant", "evaluation.baseline=false")  # fmt: skip


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("lost", ["nothing", "final evaluation", "adapter save"])
def test_resuming_a_finished_run_trains_no_more_and_keeps_the_adapter(lost, tiny_model_dir, qa_files, tmp_path):
    """Finished, killed during the final evaluation, or killed while writing the adapter (after the
    last checkpoint): --resume trains no step and the adapter is the uninterrupted run's, byte for byte."""
    import shutil

    run = tmp_path / "run"
    config = tiny_config(tiny_model_dir("bert"), qa_files, run, *FINISHED)
    run_training(config)
    adapter, metrics = _files(run / "adapter"), scores(run)
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    if lost == "final evaluation":
        for name in ("metrics.json", "predictions.json", "predictions.jsonl", "summary.json"):
            (run / name).unlink(missing_ok=True)
    elif lost == "adapter save":
        shutil.rmtree(run / "adapter")
        for name in ("metrics.json", "predictions.json", "predictions.jsonl", "summary.json", "train_log.jsonl"):
            (run / name).unlink(missing_ok=True)

    run_training(config, resume=True)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == checkpoints  # no checkpoint-4
    assert _files(run / "adapter") == adapter
    assert scores(run) == metrics
    steps = [json.loads(line).get("step", 0) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert max(steps) == 3
