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
import torch
from safetensors.torch import save_file
from run_helpers import tiny_config, tiny_overrides

from loraqa.pipeline import run_training

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
    # The child trains its steps on this process's thread count, as the two runs here do: CPU float
    # sums depend on it, and BERT's QA bias (whose true gradient is zero, so Adam scales rounding
    # noise up to ~lr) turns a last-digit difference into 1e-3 (what an earlier test's leaked
    # torch_threads=1 did, see test_a_run_keeps_its_thread_count_to_itself).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env)  # fmt: skip
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
    # The resumed run's adapter is the uninterrupted run's, bit for bit.
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (crashed / "adapter" / name).read_bytes() == (tmp_path / "straight" / "adapter" / name).read_bytes()
    straight = json.loads((tmp_path / "straight" / "predictions.jsonl").read_text().splitlines()[0])
    resumed = json.loads((crashed / "predictions.jsonl").read_text().splitlines()[0])
    # Evaluating those same weights loaded from disk rather than trained in place can round the last
    # digits differently on CPU (seen: 2.2823431e-3 vs 2.2823429e-3, same answers and scores).
    assert resumed["prediction"] == straight["prediction"]
    assert resumed["confidence"] == pytest.approx(straight["confidence"], rel=1e-6)


def test_a_run_keeps_its_thread_count_to_itself(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    """`training.torch_threads` lasts as long as its run, finished or failed: the next run in the
    process starts from the caller's count (a leaked count made in-process runs differ from
    `loraqa train`'s in the last digits, and BERT's resumed adapter from its uninterrupted one)."""
    import loraqa.pipeline.train as train_module
    from loraqa.errors import RunDirError

    before = torch.get_num_threads()
    threads = 1 if before > 1 else 2  # any count other than the caller's
    model, seen, fit = tiny_model_dir("gpt2"), [], train_module.fit
    monkeypatch.setattr(train_module, "fit", lambda *a, **k: seen.append(torch.get_num_threads()) or fit(*a, **k))
    run_training(tiny_config(model, qa_files, tmp_path / "run", "training.max_steps=1", "evaluation.baseline=false",
                             f"training.torch_threads={threads}"))  # fmt: skip
    assert seen == [threads]  # the run trained on its own count
    assert torch.get_num_threads() == before
    with pytest.raises(RunDirError, match="no run to resume"):  # refused after prepare set the count
        run_training(tiny_config(model, qa_files, tmp_path / "none", f"training.torch_threads={threads}"), resume=True)
    assert torch.get_num_threads() == before


def test_resume_without_a_run_is_refused(tiny_model_dir, qa_files, tmp_path):
    from loraqa.errors import RunDirError

    with pytest.raises(RunDirError, match="no run to resume"):
        run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, tmp_path / "none", *SETTINGS), resume=True)


def test_only_complete_checkpoints_are_resumed(tmp_path):
    """Complete: adapter weights, optimizer, scheduler, RNG state and a trainer state whose
    global_step is the folder's step. A `{}` state, a wrong step or a missing file is not."""
    from transformers.trainer_callback import TrainerState

    from loraqa.training.trainer import last_complete_checkpoint

    checkpoints = tmp_path / "checkpoints"

    def checkpoint(step: int, state_step: int | None = None, missing: str | None = None, state: str | None = None):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name in ("adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
            if name != missing:
                (folder / name).write_bytes(b"x")
        if missing != "adapter_model.safetensors":  # readable, finite weights (resume also checks those)
            save_file({"lora_A.weight": torch.zeros(2, 2)}, str(folder / "adapter_model.safetensors"))
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
        elif missing != "trainer_state.json":
            TrainerState(global_step=step if state_step is None else state_step).save_to_json(
                str(folder / "trainer_state.json")
            )

    checkpoint(2)
    checkpoint(3, state="{}")  # parses as a state of step 0
    checkpoint(4, state_step=3)
    for step, missing in enumerate(("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                                    "trainer_state.json"), start=5):  # fmt: skip
        checkpoint(step, missing=missing)
    checkpoint(10, state="[1, 2]")
    (checkpoints / ".staging" / "checkpoint-11").mkdir(parents=True)
    assert last_complete_checkpoint(str(checkpoints)) == str(checkpoints / "checkpoint-2")
    assert not (checkpoints / ".staging").exists()


def test_a_real_save_is_staged_fsynced_then_renamed(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    """The Trainer's own save writes under checkpoints/.staging/; each checkpoint appears under its
    name by one rename, once every file is there and fsynced, and the rename is fsynced too."""
    import loraqa.training.trainer as trainer_module
    from loraqa.training.trainer import CHECKPOINT_FILES, is_complete_checkpoint

    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    renames, synced = [], []
    original_replace, original_fsync = trainer_module.replace_directory, os.fsync

    def recording_replace(source, target):
        renames.append((Path(source), Path(target), sorted(os.listdir(source)), os.path.exists(target), len(synced)))
        original_replace(source, target)
        renames[-1] += (len(synced),)

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return original_fsync(fd)

    monkeypatch.setattr(trainer_module, "replace_directory", recording_replace)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, run, "training.max_steps=2", "training.save_strategy=steps",
                             "training.save_steps=1", "evaluation.baseline=false"))  # fmt: skip
    assert [(source, target) for source, target, *_ in renames] == [
        (checkpoints / ".staging" / f"checkpoint-{n}", checkpoints / f"checkpoint-{n}") for n in (1, 2)
    ]
    for source, target, files, existed, before, after in renames:
        assert not existed  # nothing was written under the final name before the rename
        assert set(CHECKPOINT_FILES) | {"trainer_state.json"} <= set(files)
        during = synced[before:after]
        assert {str(source / name) for name in files} <= set(during)  # contents on disk before the rename
        assert str(checkpoints) in during[during.index(str(source)) + 1 :]  # the rename itself, after
        assert is_complete_checkpoint(str(target))  # the completeness rule accepts real saves
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


# kill -9 inside a save or an evaluation: the child stops at that point (touching a marker file) and
# is killed there; `--resume` must then finish with the uninterrupted run's numbers.
HANGING_CHILD = """
import os, sys, time
from pathlib import Path
point, marker = os.environ["HANG_AT"], Path(os.environ["HANG_MARKER"])
def hang():
    marker.touch()
    time.sleep(600)
if point == "checkpoint":  # step 3's weights are in .staging/checkpoint-3, its optimizer state not yet
    from loraqa.training.trainer import QATrainer
    save = QATrainer._save_optimizer_and_scheduler
    def hanging(self, output_dir):
        if self.state.global_step == 3:
            Path(output_dir, "optimizer.pt").write_bytes(b"half")
            hang()
        return save(self, output_dir)
    QATrainer._save_optimizer_and_scheduler = hanging
else:  # adapter: weights written into .adapter.tmp-*, loraqa.json not yet; baseline: predictions written
    import loraqa.evaluation.runner as runner
    import loraqa.lora.adapter as adapter
    module, name, folder = (adapter, "loraqa.json", None) if point == "adapter" else (runner, "metrics.json", "baseline")
    write = module.write_json_atomic
    def hanging(path, data):
        if Path(path).name == name and (folder is None or Path(path).parent.name == folder):
            hang()
        return write(path, data)
    module.write_json_atomic = hanging
from loraqa.cli import main
sys.exit(main(sys.argv[1:]))
"""

KILL_SETTINGS = ("training.max_steps=5", "training.save_strategy=steps", "training.save_steps=1",
                 "lora.lora_dropout=0.1")  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, qa_files, tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, run, *KILL_SETTINGS))
    return run


def kill_at(point: str, args: list[str], marker: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HANG_AT": point, "HANG_MARKER": str(marker)}
    child = subprocess.Popen([sys.executable, "-c", HANGING_CHILD, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert child.poll() is None, f"the run ended before reaching {point}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()


@pytest.mark.parametrize("point", ["checkpoint", "adapter", "baseline"])
def test_kill_9_inside_a_save_or_the_baseline_then_resume_equals_uninterrupted(point, uninterrupted, tiny_model_dir,
                                                                               qa_files, tmp_path):  # fmt: skip
    model = tiny_model_dir("gpt2")
    crashed = tmp_path / "crashed"
    kill_at(point, ["train", *tiny_overrides(model, qa_files, crashed, *KILL_SETTINGS)], tmp_path / "marker")

    from loraqa.training.trainer import is_complete_checkpoint, last_complete_checkpoint

    if point == "checkpoint":
        assert (crashed / "checkpoints" / ".staging" / "checkpoint-3" / "optimizer.pt").read_bytes() == b"half"
        assert not (crashed / "checkpoints" / "checkpoint-3").exists()
    elif point == "adapter":
        assert not (crashed / "adapter").exists() and list(crashed.glob(".adapter.tmp-*"))
    else:
        assert (crashed / "baseline" / "predictions.jsonl").is_file() and not (
            crashed / "baseline" / "metrics.json"
        ).exists()

    run_training(tiny_config(model, qa_files, crashed, *KILL_SETTINGS), resume=True)
    assert scores(crashed) == scores(uninterrupted)
    for name in ("predictions.jsonl", "baseline/predictions.jsonl"):
        assert (crashed / name).read_text() == (uninterrupted / name).read_text()

    def baseline(run):
        metrics = json.loads((run / "baseline" / "metrics.json").read_text())
        return {k: v for k, v in metrics.items() if k not in ("seconds", "questions_per_second")}

    assert baseline(crashed) == baseline(uninterrupted)
    assert not [p.name for p in crashed.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # leftovers cleared
    assert not (crashed / "checkpoints" / ".staging").exists()
    # checkpoint-5 (the last step) is complete, and a run resumed at max_steps trains no step more.
    assert not (crashed / "checkpoints" / "checkpoint-6").exists()
    assert is_complete_checkpoint(str(crashed / "checkpoints" / "checkpoint-5"))
    assert last_complete_checkpoint(str(crashed / "checkpoints")) is not None


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
