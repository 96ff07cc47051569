"""Map the `training` config section onto transformers' TrainingArguments."""

from __future__ import annotations

from transformers import TrainingArguments

from loraqa.config.schema import RunConfig
from loraqa.config.validate import tracking_backends
from loraqa.device import DevicePlan


def training_arguments(config: RunConfig, plan: DevicePlan, checkpoint_dir: str, label_names) -> TrainingArguments:
    t = config.training
    return TrainingArguments(
        output_dir=checkpoint_dir,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=config.evaluation.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        # transformers 5 reads a float in [0, 1) as a ratio of the total steps.
        warmup_steps=t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        weight_decay=t.weight_decay,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16",
        use_cpu=plan.device == "cpu",
        optim="adamw_torch_fused" if plan.device == "cuda" else "adamw_torch",
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=t.save_strategy,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=t.load_best_model_at_end,
        metric_for_best_model=t.metric_for_best_model,
        greater_is_better=t.metric_for_best_model != "eval_loss",
        logging_steps=t.logging_steps,
        # transformers' own WandbCallback and MLflowCallback log what happens inside Trainer, into the
        # runs training/tracking.py started. TensorBoard is not named here: transformers 5 dropped
        # `logging_dir`, so tracking.py hands Trainer a TensorBoardCallback writing to RUN/tensorboard.
        report_to=[name for name in tracking_backends(t) if name != "tensorboard"] or "none",
        run_name=config.name,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        remove_unused_columns=False,
        label_names=list(label_names),
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_pin_memory=plan.device == "cuda",  # page-locked copies help CUDA only; MPS warns of them
        # Trainer's filter reads every micro-step's loss on the host (a sync per step) to hide a NaN in
        # the logged average; FiniteGuard stops training on one instead (training/trainer.py).
        logging_nan_inf_filter=False,
        disable_tqdm=False,
        # Under DDP: every trainable (LoRA) weight is used in each forward pass, so the search for
        # unused ones (a second pass over the graph, and an error with frozen bases) is off.
        ddp_find_unused_parameters=False,
    )


def examples_per_step(args: TrainingArguments) -> int:
    """Training examples in one optimiser step, over every process and accumulated batch."""
    return args.train_batch_size * args.gradient_accumulation_steps * args.world_size
