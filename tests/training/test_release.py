"""Runs in one process (`loraqa compare`, a sweep worker's trials, the GPU check) each start with the
memory the process had before the first: a finished run releases its model, optimizer and trainer
explicitly, not whenever the garbage collector gets to the trainer's reference cycles (issue 30 §5)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from run_helpers import tiny_config

import loraqa.pipeline.prepare_phase as prepare_phase
from loraqa.errors import TrainingError
from loraqa.pipeline import run_training
from loraqa.training.trainer import QATrainer


def _live_tensors() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def _cuda_allocated() -> int:
    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


@pytest.fixture
def watched(monkeypatch):
    """Weak references to each run's model (with LoRA) and trainer (with its optimizer); the collector's
    automatic runs off, so only an explicit release can free them in time."""
    refs: dict[str, list] = {"model": [], "trainer": [], "optimizer": []}
    attach = prepare_phase.attach_lora

    def attach_and_watch(*args, **kwargs):
        model = attach(*args, **kwargs)
        refs["model"].append(weakref.ref(model))
        return model

    original_train = QATrainer.train

    def train_and_watch(self, *args, **kwargs):
        refs["trainer"].append(weakref.ref(self))
        try:
            return original_train(self, *args, **kwargs)
        finally:
            refs["optimizer"].append(weakref.ref(self.optimizer))

    monkeypatch.setattr(prepare_phase, "attach_lora", attach_and_watch)
    monkeypatch.setattr(QATrainer, "train", train_and_watch)
    gc.collect()
    gc.disable()
    yield refs
    gc.enable()


def test_a_second_run_starts_from_the_memory_the_first_started_from(watched, tiny_model_dir, qa_files, tmp_path):
    def config(name):
        return tiny_config(
            tiny_model_dir("gpt2"), qa_files, tmp_path / name, "evaluation.baseline=false", "training.save_strategy=no"
        )

    run_training(config("warm-up"))  # imports, caches and lazily built tables stay: measured after it
    before = (_live_tensors(), _cuda_allocated())
    run_training(config("first"))
    assert [ref() for ref in watched["model"]] == [None, None]
    assert [ref() for ref in watched["trainer"]] == [None, None]
    assert [ref() for ref in watched["optimizer"]] == [None, None]
    assert (_live_tensors(), _cuda_allocated()) == before  # where the next run starts


def test_a_run_that_raised_releases_its_model_too(watched, tiny_model_dir, qa_files, tmp_path, monkeypatch):
    def broken(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        raise TrainingError("stopped on purpose")

    monkeypatch.setattr(QATrainer, "compute_loss", broken)
    with pytest.raises(TrainingError):
        run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, tmp_path / "run", "evaluation.baseline=false"))
    assert watched["model"][0]() is None and watched["trainer"][0]() is None
