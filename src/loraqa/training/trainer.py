"""transformers' Trainer, taught three things about QA.

1. Length-grouped batches from lengths we already know (no pass over the data to measure them).
2. The formulation's own loss when it has a faster one (causal: logits for answer tokens only).
3. Evaluation during training is real QA evaluation on the validation split (EM/F1/ROUGE from
   generated or extracted answers plus eval_loss), so `metric_for_best_model: f1` and early
   stopping select on what users care about, not on token accuracy.
A non-finite loss stops training at once, naming the step, before a bad update is saved.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from loraqa.errors import TrainingError


class FeatureDataset(torch.utils.data.Dataset):
    """Pre-tokenized features (lists of ids); tokenized once, before training starts."""

    def __init__(self, features: list[dict[str, list[int]]]):
        self.features = features
        self.lengths = [len(f["input_ids"]) for f in features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


class QATrainer(Trainer):
    def __init__(self, *args, formulation, qa_evaluator: Callable[[object], dict] | None, nan_hint: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.formulation = formulation
        self.qa_evaluator = qa_evaluator
        self.nan_hint = nan_hint
        if formulation.has_own_loss:
            # Our loss is a per-batch mean: Trainer must still divide it over accumulation steps.
            self.loss_is_scaled_for_ga = False

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and isinstance(dataset, FeatureDataset):
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                dataset=dataset,
                lengths=dataset.lengths,
            )
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not return_outputs:
            loss = self.formulation.compute_loss(model, inputs)
            if loss is not None:
                return loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = float(loss)
        if not math.isfinite(value):
            raise TrainingError(
                f"the training loss became {value} at step {self.state.global_step + 1}; {self.nan_hint}. "
                "The last saved checkpoint is kept"
            )
        return loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        if self.qa_evaluator is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        raw = self.qa_evaluator(self.model)
        metrics = {}
        for key, value in raw.items():
            if isinstance(value, (int, float)):
                name = key if key.startswith(f"{metric_key_prefix}_") else f"{metric_key_prefix}_{key}"
                metrics[name] = float(value)
        metrics["epoch"] = self.state.epoch
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
