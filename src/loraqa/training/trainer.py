"""transformers' Trainer, taught three things about QA.

1. Length-grouped batches, in random order, from lengths we already know (no pass over the data);
   questions whose prompts share a start (one paragraph) in one batch, when the formulation runs
   that start once per batch (`collate(..., share_prefixes=True)`).
2. The formulation's own loss when it has a faster one (causal: logits for answer tokens only).
3. Evaluation during training is real QA evaluation on the validation split (EM/F1/ROUGE from
   generated or extracted answers plus eval_loss), so `metric_for_best_model: f1` and early
   stopping select on what users care about, not on token accuracy.
A non-finite loss or LoRA gradient stops training before the optimizer step that would apply it,
and a non-finite trainable weight at the next logging step (or save, or the end), naming the step
and the last good checkpoint, with one host read per optimizer step (`FiniteGuard`); a checkpoint
with non-finite weights is never written nor offered for resume. A training loss that explodes (see `DivergenceGuard`) stops
training too, unless `training.stop_on_divergence` is false.
Checkpoints are written under a staging directory, fsynced, and renamed into place when complete
(the rename fsynced too), so neither a crash nor a power cut mid-save leaves a `checkpoint-N` that
`--resume` would pick; resume also checks a checkpoint holds every file it needs.

The samplers live in training/samplers.py and the guards in training/guards.py; this file keeps
QATrainer, checkpoint staging and what resume reads from a checkpoint.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import Trainer
from transformers.trainer import FSDP_MODEL_NAME, OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from loraqa import distributed
from loraqa.atomic import replace_directory
from loraqa.config.schema import TrainingConfig
from loraqa.errors import TrainingError
from loraqa.formulations.base import takes_position_ids
from loraqa.runs.files import STAGING_DIR
from loraqa.runs.write_errors import saving
from loraqa.training.arguments import examples_per_step
from loraqa.training.guards import DivergenceGuard, FiniteGuard, non_finite_parameter
from loraqa.training.samplers import GroupKeepingSampler, RankBatches, ShuffledLengthGroupedSampler
from loraqa.training.step_lines import use_step_lines

# STAGING_DIR is not matched by `checkpoint-*`: Trainer and resume never see a save in progress.
# What resuming reads from a checkpoint; a folder missing any of them is not a checkpoint.
CHECKPOINT_FILES = ("adapter_model.safetensors", "adapter_config.json", OPTIMIZER_NAME, SCHEDULER_NAME)


class FeatureDataset(torch.utils.data.Dataset):
    """Pre-tokenized features (lists of ids); tokenized once, before training starts."""

    def __init__(self, features: list[dict[str, list[int]]], groups: list[list[int]] | None = None):
        self.features = features
        self.lengths = [len(f["input_ids"]) for f in features]
        self.groups = groups  # indices to batch together where they fit (Formulation.prompt_groups)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


class QATrainer(Trainer):
    def __init__(
        self,
        *args,
        formulation,
        qa_evaluator: Callable[[object], dict] | None,
        nan_hint: str,
        stop_on_divergence: bool = True,
        loraplus_lr_ratio: float | None = None,
        **kwargs,
    ):
        self.loraplus_lr_ratio = loraplus_lr_ratio  # read by create_optimizer, which Trainer may call early
        super().__init__(*args, **kwargs)
        self.formulation = formulation
        self.qa_evaluator = qa_evaluator
        self.nan_hint = nan_hint
        self.divergence_warning: str | None = None  # set when a divergence is let through
        self.finite_guard = FiniteGuard(self)
        self.add_callback(self.finite_guard)
        self.add_callback(DivergenceGuard(self, stop_on_divergence))
        use_step_lines(self, examples_per_step(self.args))  # one clean line per logging step, not Trainer's dicts
        self._staging: str | None = None

    def create_optimizer(self, model=None):
        """LoRA+ (`training.loraplus_lr_ratio`): peft's optimizer, B matrices at ratio x the learning rate,
        built from the optimizer Trainer would use (`optim`, betas, eps); otherwise Trainer's own."""
        if self.optimizer is None and self.loraplus_lr_ratio is not None:
            from peft.optimizers import create_loraplus_optimizer

            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
            lr = optimizer_kwargs.pop("lr", self.args.learning_rate)
            self.optimizer = create_loraplus_optimizer(
                model or self.model,
                optimizer_cls,
                lr=lr,
                loraplus_lr_ratio=self.loraplus_lr_ratio,
                loraplus_weight_decay=self.args.weight_decay,
                **optimizer_kwargs,
            )
        return super().create_optimizer(model)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        by_length = self.args.train_sampling_strategy == "group_by_length"
        ranks, batch = self.args.world_size, self.args.train_batch_size
        if isinstance(dataset, FeatureDataset) and dataset.groups is not None:
            # Prefixes are shared inside one forward batch, so groups fill those, not accumulated steps.
            sampler = GroupKeepingSampler(batch, dataset.groups, dataset.lengths, by_length)
        elif by_length and isinstance(dataset, FeatureDataset):
            # One optimizer step's examples (all ranks, all accumulated batches) share a length group.
            sampler = ShuffledLengthGroupedSampler(
                examples_per_step(self.args), dataset=dataset, lengths=dataset.lengths
            )
        else:
            return super()._get_train_sampler(train_dataset)
        return RankBatches(sampler, batch, self.args.seed, ranks, self.args.process_index)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not return_outputs:
            loss = self.formulation.compute_loss(model, inputs)
            # The formulation's loss is a per-batch mean: Trainer must still divide it over accumulation
            # steps (it reads this flag after each compute_loss); the model's own loss leaves Trainer's rule.
            self.loss_is_scaled_for_ga = False if loss is not None else None
            if loss is not None:
                return loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.finite_guard.losses.append(loss.detach())  # read with the gradients: no host sync per micro-step
        return loss

    def release(self) -> None:
        """Let go of the model, optimizer and scheduler, and break the guards' references back to this
        trainer: a finished run's memory is then freed when the run ends, not whenever the garbage
        collector gets to the cycle (compare and sweep trials train one run after another in a process).
        The state and callbacks stay readable."""
        self.accelerator.free_memory()  # accelerate's own lists of what it prepared
        self.model = self.model_wrapped = self.optimizer = self.lr_scheduler = None
        handler = self.callback_handler
        handler.model = handler.optimizer = handler.lr_scheduler = None
        for callback in handler.callbacks:
            if getattr(callback, "trainer", None) is self:
                callback.trainer = None
        self.finite_guard.losses.clear()

    def stop(self, problem: str, remedy: str = "") -> None:
        """Raise TrainingError for `problem`, with the hint and the checkpoint --resume would use."""
        last = last_complete_checkpoint(self.args.output_dir)
        kept = f"the last good checkpoint is {last}" if last else "no good checkpoint was saved before it"
        raise TrainingError(f"{problem}; {self.nan_hint}{remedy}; {kept}")

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

    # --- checkpoints: stage, then rename ----------------------------------------------------------

    def _get_output_dir(self, trial) -> str:
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        name = non_finite_parameter(model)
        if name:  # never write a checkpoint that cannot be resumed from
            self.stop(f"the trainable weight {name} is non-finite at step {self.state.global_step}")
        root = self.args.output_dir
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = os.path.join(root, STAGING_DIR, name), os.path.join(root, name)
        self._staging = os.path.join(root, STAGING_DIR)
        try:
            with saving(staged):  # disk full is one OSError naming the path, not torch.save's RuntimeErrors
                super()._save_checkpoint(model, trial)  # writes STAGING_DIR/checkpoint-N, rotates nothing real
        except OSError:
            if distributed.is_main():  # the half-written copy is never resumed: give its room back now
                shutil.rmtree(self._staging, ignore_errors=True)
            raise
        finally:
            self._staging = None
        if self.state.best_global_step:
            best = os.path.join(root, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
            if self.state.best_global_step == self.state.global_step or os.path.isdir(best):
                self.state.best_model_checkpoint = best  # every rank: the state must agree
                if distributed.is_main():
                    self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))  # with the real path
        # Rank 0 alone renames and rotates; the others wait, so no rank ever sees a half state.
        distributed.barrier()
        if distributed.is_main():
            replace_directory(Path(staged), Path(final))
            shutil.rmtree(os.path.join(root, STAGING_DIR), ignore_errors=True)
            # The best checkpoint is protected; the newest too (for resuming).
            rotate_checkpoints(root, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
        distributed.barrier()

    def _save_rng_state(self, output_dir: str) -> None:
        """Trainer writes `rng_state_<rank>.pth` from every rank; here rank 0 writes all of them
        (gathered), so only rank 0 writes into the run directory."""
        if not distributed.is_distributed():
            return super()._save_rng_state(output_dir)
        states = distributed.gather_objects(_rng_states())
        if distributed.is_main():
            for index, state in enumerate(states):
                torch.save(state, os.path.join(output_dir, f"rng_state_{index}.pth"))


def _rng_states() -> dict:
    """This process's random states, as Trainer's `_load_rng_state` reads them back (CPU and CUDA)."""
    import random

    import numpy as np

    states = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.random.get_rng_state_all()
    return states


def shared_prompt_groups(training: TrainingConfig, formulation, model, features) -> list[list[int]] | None:
    """Index groups of features for `GroupKeepingSampler` when the formulation can run their shared
    prompt start once per batch; None otherwise. Groups mean the collator is to be called with
    `share_prefixes=True` (the caller passes it on; nothing is set on the formulation).

    Gradient checkpointing recomputes layers without the KV cache that start lives in, and rows
    padded inside need explicit position ids: either way, nothing is shared.
    """
    if not training.share_prompt_prefixes or training.gradient_checkpointing or not takes_position_ids(model):
        return None
    groups = formulation.prompt_groups(features)
    if groups is None or all(len(g) == 1 for g in groups):
        return None  # nothing shared: the plain length-grouped sampler
    return groups


def last_complete_checkpoint(checkpoint_dir: str) -> str | None:
    """The newest complete `checkpoint-N`; clears a crashed save's staging area.

    Complete: the adapter weights, optimizer and scheduler states, an RNG state, and a readable
    trainer state whose global_step is N; DeepSpeed's and FSDP's checkpoints keep weights and optimizer
    their own way (`checkpoint_layout`). Only a finished save is renamed to `checkpoint-N`, so this
    guards against folders made by hand, copied in part or damaged on disk. A newest checkpoint written
    under another launcher than this run's is refused (`check_launcher`), never trained over silently.
    """
    if distributed.is_main():  # the run directory's owner; others only read
        shutil.rmtree(os.path.join(checkpoint_dir, STAGING_DIR), ignore_errors=True)
    if not os.path.isdir(checkpoint_dir):
        return None
    steps = []
    for name in os.listdir(checkpoint_dir):
        prefix, _, number = name.partition("-")
        folder = os.path.join(checkpoint_dir, name)
        if prefix == PREFIX_CHECKPOINT_DIR and number.isdigit() and is_complete_checkpoint(folder):
            if not weights_are_finite(folder):
                continue  # NaN weights: resuming would only train on from garbage
            steps.append(int(number))
    if not steps:
        return None
    newest = os.path.join(checkpoint_dir, f"{PREFIX_CHECKPOINT_DIR}-{max(steps)}")
    check_launcher(newest)
    return newest


# Where each launcher's checkpoints keep the optimizer state (Trainer writes `optimizer.pt` only without
# DeepSpeed and FSDP): DeepSpeed's engine in `global_stepN/*optim_states.pt`; FSDP in `optimizer.bin`
# or a sharded `optimizer_0/`, with the model as `pytorch_model_fsdp*` (no adapter file when sharded).
LAUNCHER_ENV = {"deepspeed": "ACCELERATE_USE_DEEPSPEED", "fsdp": "ACCELERATE_USE_FSDP"}  # set by accelerate launch


def checkpoint_layout(folder: str) -> str:
    """Which launcher wrote a checkpoint: "deepspeed", "fsdp" or "plain" (one process, DDP)."""
    names = os.listdir(folder)
    if any(n.startswith("global_step") and os.path.isdir(os.path.join(folder, n)) for n in names):
        return "deepspeed"
    if any(n.startswith(FSDP_MODEL_NAME) for n in names):
        return "fsdp"
    return "plain"


def _has_state(folder: str, layout: str) -> bool:
    """The layout's weights and optimizer state are there (see LAUNCHER_ENV's comment)."""
    names = os.listdir(folder)
    if layout == "deepspeed":
        tags = [os.path.join(folder, n) for n in names if n.startswith("global_step")]
        optimizer = any(f.endswith("optim_states.pt") for tag in tags for f in os.listdir(tag))
        return optimizer and all(os.path.isfile(os.path.join(folder, n)) for n in CHECKPOINT_FILES[:2])
    if layout == "fsdp":
        return any(n.startswith("optimizer") and not n.endswith(".pt") for n in names)  # optimizer.bin, optimizer_0/
    return all(os.path.isfile(os.path.join(folder, name)) for name in CHECKPOINT_FILES)


def check_launcher(checkpoint: str) -> None:
    """Refuse (TrainingError) to resume a checkpoint under another launcher than the one that wrote it:
    Trainer would find no optimizer state it can read and train on with a fresh one, silently."""
    layout = checkpoint_layout(checkpoint)
    active = next((name for name, env in LAUNCHER_ENV.items() if os.environ.get(env, "").lower() == "true"), "plain")
    if layout != active:
        launchers = {"deepspeed": "DeepSpeed", "fsdp": "FSDP", "plain": "no DeepSpeed or FSDP"}
        raise TrainingError(
            f"{checkpoint} was written under {launchers[layout]} but this run uses {launchers[active]}: its "
            "optimizer state cannot be restored; resume with the launcher and --config_file that wrote it"
        )


def is_complete_checkpoint(folder: str) -> bool:
    step = os.path.basename(folder).rpartition("-")[2]
    if not os.path.isfile(os.path.join(folder, SCHEDULER_NAME)) or not _has_state(folder, checkpoint_layout(folder)):
        return False
    if not any(name.startswith("rng_state") and name.endswith(".pth") for name in os.listdir(folder)):
        return False
    try:
        state = TrainerState.load_from_json(os.path.join(folder, TRAINER_STATE_NAME))
    except (ValueError, OSError, TypeError):
        return False  # unreadable or not a trainer state
    return str(state.global_step) == step


def weights_are_finite(checkpoint: str) -> bool:
    """Whether every tensor in the checkpoint's adapter weights is finite (True when it has none:
    whether the weights file must exist is the completeness check's business)."""
    path = os.path.join(checkpoint, "adapter_model.safetensors")
    if not os.path.isfile(path):
        return True
    try:
        with safe_open(path, framework="pt") as handle:
            return all(bool(torch.isfinite(handle.get_tensor(key)).all()) for key in handle.keys())
    except (SafetensorError, OSError, ValueError):
        return False
