"""A `loraqa train` killed at any point (kill -9, kill, Ctrl-C), then the same command with
`--resume`: the run finishes with exactly the adapter and metrics of an uninterrupted run (same
seed, CPU and thread count, tiny models on each formulation's shipped config)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from kill_helpers import kill, start_loraqa, wait_until_stopped
from run_helpers import tiny_config, tiny_overrides
from safetensors.torch import save_file

from loraqa.config.loader import load_config
from loraqa.pipeline import run_training

SETTINGS = ("training.max_steps=9", "training.save_strategy=steps", "training.save_steps=1", "lora.lora_dropout=0.1")


def scores(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("seconds", "questions_per_second", "adapter")}


# --- kill at any point, then --resume: the uninterrupted run's adapter, bit for bit -------------------
# Each formulation runs its shipped config (baseline on, validation and best-model selection as
# shipped), shrunk to a tiny model and five steps with a checkpoint (and, where the config evaluates
# during training, a validation) at every step.
SHIPPED = {
    "bert": ("minilm-l6-squad", ()),  # extractive; save_total_limit 2 rotates checkpoints away
    "gpt2": ("gpt2-squad", ("training.eval_strategy=steps", "training.eval_steps=1")),  # causal; best model kept
    "t5": ("flan-t5-small-squad", ("training.eval_steps=1",)),  # seq2seq; best model kept
}
KILL_STEPS = ("training.max_steps=5", "training.save_strategy=steps", "training.save_steps=1")

# Where the process is stopped, and the signal that ends it there: every signal a user sends (kill -9,
# kill, Ctrl-C) lands inside or between the phases at least once per formulation.
KILLS = [
    ("before-baseline", signal.SIGTERM),
    ("baseline-metrics", signal.SIGKILL),  # inside the baseline: its predictions written, metrics.json not
    ("before-fit", signal.SIGINT),  # after the baseline
    ("checkpoint-save:1", signal.SIGKILL),  # inside the first checkpoint's save: no complete one yet
    ("step:3", signal.SIGINT),  # training, checkpoint-3 complete
    ("checkpoint-save:4", signal.SIGTERM),  # inside a later save
    ("adapter-save", signal.SIGKILL),
    ("final-metrics", signal.SIGINT),  # the final evaluation: predictions written, metrics.json not
]


def kill_overrides(family: str, model: Path, qa_files, out: Path) -> tuple[str, list[str]]:
    config, extra = SHIPPED[family]
    return config, tiny_overrides(model, qa_files, out, *KILL_STEPS, *extra)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, qa_files, tmp_path_factory):
    """family -> the run directory of its uninterrupted run (trained once per module)."""
    runs: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in runs:
            run = tmp_path_factory.mktemp(f"straight-{family}") / "run"
            run_training(load_config(*kill_overrides(family, tiny_model_dir(family), qa_files, run)))
            runs[family] = run
        return runs[family]

    return get


def landed(point: str, run: Path) -> bool:
    """Whether the run directory shows the kill where `point` says (a kill elsewhere tests less)."""
    from loraqa.training.trainer import last_complete_checkpoint

    checkpoints = run / "checkpoints"
    half_saved = {  # read before last_complete_checkpoint, which clears the staging area
        name: (checkpoints / ".staging" / name / "optimizer.pt").is_file()
        and (checkpoints / ".staging" / name / "optimizer.pt").read_bytes() == b"half"
        for name in ("checkpoint-1", "checkpoint-4")
    }
    last = last_complete_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    baseline = (run / "baseline" / "metrics.json").is_file()
    return {
        "before-baseline": not (run / "baseline").exists() and last is None,
        "baseline-metrics": (run / "baseline" / "predictions.jsonl").is_file() and not baseline,
        "before-fit": baseline and last is None,
        "checkpoint-save:1": half_saved["checkpoint-1"] and last is None,
        "step:3": last == str(checkpoints / "checkpoint-3") and not (run / "adapter").exists(),
        "checkpoint-save:4": half_saved["checkpoint-4"] and last == str(checkpoints / "checkpoint-3"),
        "adapter-save": not (run / "adapter").exists() and bool(list(run.glob(".adapter.tmp-*"))),
        "final-metrics": (run / "adapter").is_dir()
        and (run / "predictions.jsonl").is_file()
        and not (run / "metrics.json").exists(),
    }[point]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _losses(run: Path) -> list[tuple[int, float]]:
    entries = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [(e["step"], e["loss"]) for e in entries if "loss" in e]


def _baseline(run: Path) -> dict:
    metrics = json.loads((run / "baseline" / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("seconds", "questions_per_second")}


@pytest.mark.parametrize("point, how", KILLS, ids=[point for point, _ in KILLS])
@pytest.mark.parametrize("family", list(SHIPPED))
def test_killed_anywhere_then_resumed_equals_the_uninterrupted_run(
    family, point, how, uninterrupted, tiny_model_dir, qa_files, tmp_path
):
    """`loraqa train` (a real process) stopped at `point` and killed there by `how`; the same command
    with --resume ends with the uninterrupted run's adapter bytes, metrics, predictions, baseline and
    per-step training losses."""
    model, crashed = tiny_model_dir(family), tmp_path / "crashed"
    config, overrides = kill_overrides(family, model, qa_files, crashed)
    log, markers = tmp_path / "train.log", tmp_path / "markers"
    process = start_loraqa(["train", config, *overrides], log, point, markers)
    wait_until_stopped(process, markers, log)
    kill(process, how)
    assert landed(point, crashed), log.read_text()[-3000:]

    run_training(load_config(config, overrides), resume=True)
    straight = uninterrupted(family)
    assert _files(crashed / "adapter") == _files(straight / "adapter")
    assert scores(crashed) == scores(straight)
    assert (crashed / "predictions.jsonl").read_text() == (straight / "predictions.jsonl").read_text()
    assert _baseline(crashed) == _baseline(straight)
    assert (crashed / "baseline" / "predictions.jsonl").read_text() == (
        straight / "baseline" / "predictions.jsonl"
    ).read_text()
    assert _losses(crashed) == _losses(straight)
    assert not [p.name for p in crashed.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # leftovers cleared
    assert not (crashed / "checkpoints" / ".staging").exists()
    assert not (crashed / "checkpoints" / "checkpoint-6").exists()  # a run resumed at max_steps trains no step more


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
    run_training(
        tiny_config(model, qa_files, tmp_path / "run", "training.max_steps=1", f"training.torch_threads={threads}")
    )
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
    for step, missing in enumerate(
        ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"), start=5
    ):
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
    run_training(
        tiny_config(
            tiny_model_dir("gpt2"),
            qa_files,
            run,
            "training.max_steps=2",
            "training.save_strategy=steps",
            "training.save_steps=1",
        )
    )
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


FINISHED = (
    "training.max_steps=3",
    "training.save_strategy=steps",
    "training.save_steps=1",
    "training.lr_scheduler_type=constant",
)


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
