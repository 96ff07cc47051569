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

Why this file passes ~400 lines: the samplers, guards and checkpoint staging each hook one
Trainer method, and reading them beside QATrainer shows the whole contract; the samplers are the
first candidate to move out (training/samplers.py) when it grows again.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import Trainer, TrainerCallback
from transformers.trainer import FSDP_MODEL_NAME, OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_pt_utils import BatchRebalanceSampler, LengthGroupedSampler, get_length_grouped_indices
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from loraqa.config.schema import TrainingConfig
from loraqa.errors import TrainingError
from loraqa.formulations.base import takes_position_ids
from loraqa.runs.atomic import replace_directory
from loraqa.runs.rundir import STAGING_DIR
from loraqa.runs.write_errors import saving
from loraqa.training import distributed
from loraqa.training.arguments import examples_per_step

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


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """Batches of similar length, visited in random order.

    transformers' sampler sorts inside mega-batches of min(n // (4 x batch), 50) batches, so a run of
    fewer than 8 batches gets groups of one batch, i.e. no grouping at all, and 100-question runs
    only groups of 3 (measured padding share, SmolLM2, 96 questions at batch 8: 11.4% vs 3.1% with
    mega-batches of 50). Sorting inside 50-batch mega-batches alone would feed each mega-batch
    longest-first, a length curriculum nobody asked for; shuffling whole batches afterwards keeps
    the grouping and removes the order.
    """

    MEGA_BATCH_MULT = 50

    def __iter__(self):
        grouped = get_length_grouped_indices(
            self.lengths, self.batch_size, mega_batch_mult=self.MEGA_BATCH_MULT, generator=self.generator
        )
        return self._shuffled([grouped[i : i + self.batch_size] for i in range(0, len(grouped), self.batch_size)])

    def _shuffled(self, batches: list[list[int]]):
        # A short remainder batch must stay last, or every DataLoader batch after it would straddle two groups.
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        order = torch.randperm(len(batches), generator=self.generator).tolist()
        return iter([index for position in order for index in batches[position]] + [i for b in tail for i in b])


class GroupKeepingSampler(ShuffledLengthGroupedSampler):
    """Batches that keep each group (the questions of one paragraph) whole where they can.

    Groups are taken in random order and, with `by_length`, sorted by length inside mega-batches of
    50 batches, as the parent sorts questions. They fill batches of exactly `batch_size` (the last
    may be short, as the DataLoader cuts the stream): the room left in a batch takes the largest of
    the next LOOKAHEAD groups that fits, and a group is split across two batches only when none
    does. Groups of one are batched by length as the parent batches them. Batches are then visited
    in random order.
    """

    LOOKAHEAD = 8

    def __init__(self, batch_size: int, groups: list[list[int]], lengths: list[int], by_length: bool = True,
                 generator=None):  # fmt: skip
        super().__init__(batch_size, lengths=lengths, generator=generator)
        self.groups = groups
        self.by_length = by_length

    def __iter__(self):
        longest = lambda group: max(self.lengths[i] for i in group)  # noqa: E731
        order = [self.groups[g] for g in torch.randperm(len(self.groups), generator=self.generator).tolist()]
        units: list[list[int]] = []
        mega, start = self.MEGA_BATCH_MULT * self.batch_size, 0
        while start < len(order):
            end, size = start, 0
            while end < len(order) and size < mega:
                size += len(order[end])
                end += 1
            chunk = order[start:end]
            units.extend(sorted(chunk, key=longest, reverse=True) if self.by_length else chunk)
            start = end
        return self._shuffled(fill_batches(units, self.batch_size, self.LOOKAHEAD))


class RankBatches(BatchRebalanceSampler):
    """This rank's per-device batches of an index sampler's epoch, the same epoch on every rank.

    Every rank draws the same order (a generator seeded with seed + epoch, not the global RNG,
    which dropout advances differently per formulation and which Trainer restores per rank), cuts it
    into per-device batches of `batch_size`, and deals them round-robin: rank r takes batches r,
    r + W, ... of each round of W. The last round's examples are spread over all ranks (sizes
    differing by at most one; fewer examples than ranks join the previous round's batches), so
    every rank runs the same number of batches and no example is trained twice or skipped in an
    epoch, unlike the padding that accelerate's batch sharding and DistributedSampler use.

    Subclassing BatchRebalanceSampler is how Trainer (5.x) knows a batch sampler is rank-aware:
    it is then passed as `batch_sampler`, accelerate's re-sharding is turned off and `set_epoch`
    reaches it. Its rebalancing is not used.
    """

    def __init__(self, sampler, batch_size: int, seed: int, ranks: int = 1, rank: int = 0):
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed
        self.ranks, self.rank, self.epoch = ranks, rank, 0
        if len(sampler) < ranks:
            raise TrainingError(f"{len(sampler)} training examples cannot be shared by {ranks} processes")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        per_round = self.batch_size * self.ranks
        full, rest = divmod(len(self.sampler), per_round)
        return full + (1 if rest >= self.ranks else 0)

    def __iter__(self):
        self.sampler.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(deal_batches(list(self.sampler), self.batch_size, self.ranks)[self.rank])


def deal_batches(order: list[int], batch_size: int, ranks: int) -> list[list[list[int]]]:
    """`order` as per-device batches for each of `ranks` ranks (see `RankBatches`): result[r] is
    rank r's batches; all ranks get the same number, together holding every index once."""
    per_round = batch_size * ranks
    full = len(order) // per_round
    shares: list[list[list[int]]] = [
        [order[k * per_round + r * batch_size : k * per_round + (r + 1) * batch_size] for k in range(full)]
        for r in range(ranks)
    ]
    rest = order[full * per_round :]
    if len(rest) >= ranks:  # one more, smaller batch on every rank
        for r in range(ranks):
            start, end = distributed.shard_bounds(len(rest), ranks, r)
            shares[r].append(rest[start:end])
    else:  # too few for a batch each: they join the last full round, one per rank
        for r, index in enumerate(rest):
            shares[r][-1] = shares[r][-1] + [index]
    return shares


def fill_batches(units: list[list[int]], batch_size: int, lookahead: int) -> list[list[int]]:
    """Index batches of exactly `batch_size` (the last may be short) from `units` in about their
    order, keeping a unit in one batch unless none of the next `lookahead` fits the room left."""
    pending = [list(u) for u in units if u]
    batches: list[list[int]] = []
    current: list[int] = []
    while pending:
        room = batch_size - len(current)
        fitting = [k for k in range(min(lookahead, len(pending))) if len(pending[k]) <= room]
        if fitting:
            current.extend(pending.pop(max(fitting, key=lambda k: (len(pending[k]), -k))))
        else:
            unit = pending.pop(0)
            current.extend(unit[:room])
            pending.insert(0, unit[room:])
        if len(current) == batch_size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


def non_finite_parameter(model, gradients: bool = False) -> str | None:
    """The name of the first trainable parameter (or its gradient) holding a nan or inf; None if none."""
    named = [(n, p.grad if gradients else p) for n, p in model.named_parameters() if p.requires_grad]
    return first_non_finite([(n, t) for n, t in named if t is not None])


def first_non_finite(named: list[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first tensor holding a nan or inf; None if none.

    One fused kernel per device and dtype, `torch._foreach_norm` with ord=inf (a max-abs that keeps nan
    and inf; an L2 norm would overflow to inf on large finite values), and one host read for all of them.
    """
    if not named:
        return None
    norms = torch._foreach_norm([t.detach() for _, t in named], float("inf"))
    finite = read_flags(torch.stack([norm.float() for norm in norms]).isfinite())
    return next((name for (name, _), ok in zip(named, finite) if not ok), None)


def read_flags(flags: torch.Tensor) -> list[bool]:
    """The finite-value guard's host read (a device sync on a GPU): one per check; tests count them."""
    return flags.cpu().tolist()


LOSS = "the training loss"  # first_non_finite's name for a micro-step's loss


class FiniteGuard(TrainerCallback):
    """Stops training when a micro-step's loss or a LoRA gradient (before the optimizer applies it) is
    not finite, and when a trainable weight is (at every logging, saving and evaluating step and the
    last: the weights a checkpoint, a log line or the adapter would hold). A step can break the weights
    with a finite loss, so the loss check alone lets every later checkpoint be NaN.

    Cost: the losses of an optimizer step's micro-steps stay on the device until its gradients are
    checked with them, one fused check and one host read per optimizer step; the weights' check is one
    more read on the steps named above. Under fp16 an inf gradient is routine (the loss scaler then
    skips that step), so only the losses and weights are checked there."""

    def __init__(self, trainer: QATrainer):
        self.trainer = trainer
        self.losses: list[torch.Tensor] = []  # this optimizer step's micro-step losses, unread

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        losses, self.losses = self.losses, []
        gradients = [] if args.fp16 else [(n, p.grad) for n, p in model.named_parameters()
                                          if p.requires_grad and p.grad is not None]  # fmt: skip
        name = first_non_finite([(LOSS, loss) for loss in losses] + gradients)
        if name == LOSS:
            value = next(float(loss) for loss in losses if not torch.isfinite(loss))
            self.trainer.stop(f"the training loss became {value} at step {state.global_step + 1}")
        if name:
            self.trainer.stop(f"the gradient of {name} became non-finite at step {state.global_step + 1}")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Trainer's flow callback ran first and set these for this step.
        if control.should_log or control.should_save or control.should_evaluate or control.should_training_stop:
            name = non_finite_parameter(model)
            if name:
                self.trainer.stop(f"the trainable weight {name} became non-finite at step {state.global_step}")


class DivergenceGuard(TrainerCallback):
    """Stops training (or, with `stop=False`, records a warning once) when the logged training loss
    exceeds both DIVERGENCE_FACTOR x the first logged loss and DIVERGENCE_FLOOR.

    Why these: the losses here are cross-entropies (tokens, or span starts and ends), and a model
    guessing uniformly scores ln(classes), at most ln(3.3M) = 15 for any vocabulary or window in
    use; a loss above that is worse than guessing, which no learning run reaches, while ten times
    the starting loss rules out the noise of a run that starts near zero. Both are judged on the
    logged (interval-averaged) loss, so a single noisy batch does not trigger it. A resumed run
    keeps the first logged loss of its log history as the reference.
    """

    def __init__(self, trainer: QATrainer, stop: bool):
        self.trainer = trainer
        self.stop = stop

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
        if loss is None or not losses or not math.isfinite(loss) or self.trainer.divergence_warning:
            return
        first = losses[0]
        if loss > DIVERGENCE_FACTOR * first and loss > DIVERGENCE_FLOOR:
            problem = (f"the training loss diverged at step {state.global_step}: {loss:.4g}, over "
                       f"{DIVERGENCE_FACTOR:g}x the first logged {first:.4g} and above {DIVERGENCE_FLOOR:g} "
                       "(worse than guessing)")  # fmt: skip
            if self.stop:
                self.trainer.stop(problem, "; set training.stop_on_divergence=false to train on regardless")
            self.trainer.divergence_warning = f"{problem}; the adapter is probably useless"


DIVERGENCE_FACTOR = 10.0
DIVERGENCE_FLOOR = 15.0


class QATrainer(Trainer):
    def __init__(self, *args, formulation, qa_evaluator: Callable[[object], dict] | None, nan_hint: str,
                 stop_on_divergence: bool = True, loraplus_lr_ratio: float | None = None, **kwargs):  # fmt: skip
        self.loraplus_lr_ratio = loraplus_lr_ratio  # read by create_optimizer, which Trainer may call early
        super().__init__(*args, **kwargs)
        self.formulation = formulation
        self.qa_evaluator = qa_evaluator
        self.nan_hint = nan_hint
        self.divergence_warning: str | None = None  # set when a divergence is let through
        self.finite_guard = FiniteGuard(self)
        self.add_callback(self.finite_guard)
        self.add_callback(DivergenceGuard(self, stop_on_divergence))
        self._staging: str | None = None

    def create_optimizer(self, model=None):
        """LoRA+ (`training.loraplus_lr_ratio`): peft's optimizer, B matrices at ratio x the learning rate,
        built from the optimizer Trainer would use (`optim`, betas, eps); otherwise Trainer's own."""
        if self.optimizer is None and self.loraplus_lr_ratio is not None:
            from peft.optimizers import create_loraplus_optimizer

            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
            lr = optimizer_kwargs.pop("lr", self.args.learning_rate)
            self.optimizer = create_loraplus_optimizer(
                model or self.model, optimizer_cls, lr=lr, loraplus_lr_ratio=self.loraplus_lr_ratio,
                loraplus_weight_decay=self.args.weight_decay, **optimizer_kwargs,
            )  # fmt: skip
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
