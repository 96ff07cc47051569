"""`Formulation.compute_loss` is the whole loss seam: a loss it returns is a per-batch mean, which Trainer
must still divide over accumulation steps; None leaves the model's own loss and Trainer's own rule."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from loraqa.training.trainer import QATrainer


def test_a_formulations_own_loss_is_divided_over_accumulation_steps():
    trainer = SimpleNamespace(
        formulation=SimpleNamespace(compute_loss=lambda model, batch: torch.tensor(2.0)), loss_is_scaled_for_ga=None
    )
    loss = QATrainer.compute_loss(trainer, model=None, inputs={})
    assert float(loss) == 2.0
    assert trainer.loss_is_scaled_for_ga is False  # Trainer.training_step divides by the accumulation steps
