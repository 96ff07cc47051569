"""Phase 1, `prepare`: every check, the data, the model with LoRA attached, the run directory claimed.

Everything that can fail on user input (config, data, model limits, device) is checked before the
model's weights are loaded, and everything that needs the model but no training (LoRA target
modules, the trainable share, training features) before the run directory is claimed, so a refused
run leaves nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import set_seed

from loraqa import distributed
from loraqa.config.schema import RunConfig
from loraqa.config.validate import check_lora_for_model, fit_window, needs_validation
from loraqa.console import say
from loraqa.data.prepare import RunData, load_run_data
from loraqa.device import DTYPES, DevicePlan, frozen_base_dtype, plan_device
from loraqa.errors import DataError
from loraqa.families import trained_on_squad
from loraqa.formulations import PredictSettings
from loraqa.inference.evaluate import predict_settings
from loraqa.lora.adapter import adapted_layers, attach_lora, is_plain_lora, parameter_counts
from loraqa.lora.rank import check_rank
from loraqa.models.loading import BaseSpec, inspect_base, load_model, load_tokenizer
from loraqa.runs.rundir import RunDirectory


@dataclass
class Prepared:
    """What every later phase works on: one run's config, data, model and claimed directory."""

    config: RunConfig
    data: RunData
    spec: BaseSpec
    plan: DevicePlan
    tokenizer: object
    peft_model: object  # the base with LoRA attached (peft PeftModel)
    features: list[dict]  # the tokenized training features
    settings: PredictSettings  # how every evaluation of this run answers (test, validation, baseline)
    run: RunDirectory
    resume: bool
    draws: tuple  # the random state before LoRA was attached, for the baseline to replay
    trainable_params: int
    total_params: int
    started: float = field(default_factory=time.perf_counter)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase, in order

    @property
    def trainable_percent(self) -> float:
        """Trainable parameters in percent of all."""
        return 100 * self.trainable_params / max(self.total_params, 1)


def prepare(
    config: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    validation: bool | None = None,
    data: RunData | None = None,
) -> Prepared:
    """Check, load and claim: return a `Prepared` whose run directory is locked (call
    `prepared.run.release()` when done). `validation`: carve a validation split even when nothing
    evaluates during training (comparisons and sweeps choose on it); None: only when used.
    `data`: these splits instead of the ones `config.data` names (benchmarks bring their own)."""
    started = time.perf_counter()
    wants_validation = needs_validation(config) if validation is None else validation or needs_validation(config)
    if data is None:
        data = load_run_data(
            config.data,
            validation=wants_validation,
            validation_if_v2=config.evaluation.null_score_diff_threshold == "auto",  # chosen on validation
        )
    spec = inspect_base(config.model)
    fit_window(config.model, spec.hf_config)  # a default window longer than the model reads is capped
    if config.training.torch_threads:  # before the plan, whose description (kept in summary.json) counts them
        torch.set_num_threads(config.training.torch_threads)
    plan = plan_device(config.training.device, config.training.precision, spec.model_type)
    distributed.init_process_group(cpu=plan.device == "cpu")  # [ddp] join torchrun's job (no-op alone)
    check_lora_for_model(config.lora, spec.model_type, plan.device)  # QLoRA's device and package, OLoRA on Conv1D
    adapted_layers(config.lora.layers_to_transform, spec.hf_config)  # a missing layer fails before any weights load
    check_rank(config.lora, spec.hf_config, spec.model_type)  # a rank no layer can use fails before LoRA allocates it
    spec.formulation.check_generation(config.generation.max_new_tokens)  # causal: the answer must fit the window
    say(f"model {config.model.name} ({spec.model_type}, {spec.formulation.name}) on {plan.description}")
    say(f"data: {len(data.train)} train, {len(data.validation)} validation, {len(data.test)} test questions")
    if config.evaluation.baseline and trained_on_squad(config.model.name):
        say(f"note: {config.model.name} was trained on SQuAD itself: its baseline is not zero-shot")
    set_seed(config.training.seed)  # also fixes the freshly initialised QA head
    tokenizer = load_tokenizer(spec, config.model)
    model = load_model(
        spec,
        config.model,
        tokenizer,
        plan.torch_device,
        quantize=config.lora.quantize_base,
        dtype=base_dtype(config, plan),
    )
    draws = _random_state()  # what the baseline drew from when it ran before LoRA was attached
    new_tokens = tokenizer.convert_tokens_to_ids(config.model.add_tokens) if config.model.add_tokens else None
    peft_model = attach_lora(model, config.lora, spec.formulation, spec.model_type, new_tokens)
    trainable, total = parameter_counts(peft_model)
    features = spec.formulation.training_features(data.train, tokenizer)
    if not features:
        raise DataError(config.data.train, "no training examples left after sampling")
    run = RunDirectory(config.run_dir)
    # [ddp] rank 0 claims the directory; the others wait and share its refusal, if any
    distributed.run_on_main(lambda: run.open_for_training(config, resume=resume, overwrite=overwrite))
    say(f"run directory {run.path}")
    prepared = Prepared(
        config=config,
        data=data,
        spec=spec,
        plan=plan,
        tokenizer=tokenizer,
        peft_model=peft_model,
        features=features,
        settings=predict_settings(config, data.version_2),
        run=run,
        resume=resume,
        draws=draws,
        trainable_params=trainable,
        total_params=total,
        started=started,
    )
    prepared.phase_seconds["prepare"] = round(time.perf_counter() - started, 1)
    return prepared


def base_dtype(config: RunConfig, plan: DevicePlan) -> torch.dtype:
    """The frozen base's dtype: a quantized base computes in the run's precision; a full one is half on a
    capable GPU when only LoRA matrices and heads train (`device.frozen_base_dtype`)."""
    if config.lora.quantize_base != "none":
        return DTYPES[plan.precision]
    return frozen_base_dtype(plan, is_plain_lora(config.lora, bool(config.model.add_tokens)))


def _random_state():
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
