"""Range and cross-field checks on a typed RunConfig, before anything slow happens."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re

from loraqa import families
from loraqa.config.schema import RunConfig, default_doc_stride, set_by_user
from loraqa.console import say
from loraqa.errors import ConfigError
from loraqa.formulations.config_rules import check_model_config
from loraqa.suggest import did_you_mean

LORA_PRESETS = families.LORA_PRESET_NAMES


def needs_validation(config: RunConfig) -> bool:
    """Whether the run reads a validation split: evaluation during training, best-model selection
    or early stopping. Sweeps, which score trials on validation, ask for one explicitly."""
    t = config.training
    return t.eval_strategy != "no" or t.load_best_model_at_end or t.early_stopping_patience is not None


def _validation_users(config: RunConfig) -> str:
    t = config.training
    users = [f"training.eval_strategy={t.eval_strategy}"] if t.eval_strategy != "no" else []
    if t.load_best_model_at_end:
        users.append("training.load_best_model_at_end=true")
    if t.early_stopping_patience is not None:
        users.append(f"training.early_stopping_patience={t.early_stopping_patience}")
    return ", ".join(users)


def validate_config(config: RunConfig) -> None:
    """Raise ConfigError on the first value that is out of range or contradicts another."""
    _check_finite(config)
    _check_data(config)
    _check_model(config)
    _check_lora(config)
    _check_training(config)
    _check_evaluation(config)


def _check_finite(config, prefix: str = "") -> None:
    """No float setting may be nan or inf: each is a rate, share, weight or threshold, and a nan
    passes every `<=`/`<` range check below (nan <= 0 is false), so it must be caught first."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        key = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value}")


# numpy's seed (set by transformers' set_seed) must fit in 32 unsigned bits.
MAX_SEED = 2**32 - 1


def _seed(key: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(key, f"must be in [0, {MAX_SEED}], got {value}")


def _positive(key: str, value: float | int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(key, f"must be > 0, got {value}")


def _check_data(config: RunConfig) -> None:
    data = config.data
    _positive("data.train_samples", data.train_samples, allow_none=True)
    _positive("data.test_samples", data.test_samples, allow_none=True)
    if data.validation_samples < 0:
        raise ConfigError(
            "data.validation_samples", f"must be >= 0 (0: no validation split), got {data.validation_samples}"
        )
    if data.validation_samples == 0 and needs_validation(config):
        raise ConfigError(
            "data.validation_samples",
            f"is 0, but {_validation_users(config)} evaluates on the validation split; give it > 0 or set "
            "training.eval_strategy=no",
        )
    _positive("data.max_context_chars", data.max_context_chars)
    _seed("data.seed", data.seed)
    check_run_name(config.name)


def check_run_name(name: str) -> None:
    """A run name is one plain path component, so `runs/{name}` stays inside the runs folder."""
    problem = None
    if not name.strip():
        problem = "must not be empty"
    elif name in (".", ".."):
        problem = "must not be '.' or '..'"
    elif any(char in name for char in ("/", "\\", "\0")):
        problem = "must be one plain folder name, without '/', '\\' or NUL"
    elif name.startswith("-"):
        problem = "must not start with '-' (it would read as an option)"
    elif name != name.strip():
        problem = "must not start or end with spaces"
    if problem:
        raise ConfigError("name", f"{problem}, got {name!r}")


def _check_model(config: RunConfig) -> None:
    model = config.model
    if not model.name.strip():
        raise ConfigError("model.name", "must not be empty")
    _positive("model.max_seq_length", model.max_seq_length)
    _positive("model.max_answer_length", model.max_answer_length)
    _positive("model.doc_stride", model.doc_stride)
    check_model_config(model.formulation, model)  # an explicit formulation's own rules, before anything loads


def _check_lora(config: RunConfig) -> None:
    lora = config.lora
    if lora.r < 1:
        raise ConfigError("lora.r", f"the rank must be at least 1, got {lora.r}")
    _positive("lora.lora_alpha", lora.lora_alpha)
    if not 0.0 <= lora.lora_dropout < 1.0:
        raise ConfigError("lora.lora_dropout", f"must be in [0, 1), got {lora.lora_dropout}")
    if isinstance(lora.target_modules, str):
        if not lora.target_modules.strip():
            raise ConfigError("lora.target_modules", "must name a preset or modules")
    elif not lora.target_modules:
        raise ConfigError("lora.target_modules", "must not be an empty list")
    if not 0.0 < lora.max_trainable_share <= 1.0:
        raise ConfigError("lora.max_trainable_share", f"must be in (0, 1], got {lora.max_trainable_share}")
    layers = lora.layers_to_transform
    if isinstance(layers, list) and (not layers or any(i < 0 for i in layers)):
        raise ConfigError("lora.layers_to_transform", "needs layer indices >= 0 (or upper_half)")
    _check_lora_variant(lora)


LORA_INITS = ("default", "gaussian", "pissa", "olora", "loftq")  # and pissa_niter_N
# Initialisations that move part of each adapted base weight into A and B (peft then changes the base).
MUTATING_INITS = ("pissa", "olora")
_PISSA_NITER = re.compile(r"pissa_niter_([1-9][0-9]*)")


def lora_init_family(init: str) -> str:
    """`init` without its options: pissa_niter_N is pissa."""
    return "pissa" if _PISSA_NITER.fullmatch(init) else init


def mutates_base(lora) -> bool:
    """Whether this LoRA initialisation changes the base weights it adapts (PiSSA, OLoRA)."""
    return lora_init_family(lora.init) in MUTATING_INITS


def _check_lora_variant(lora) -> None:
    """The variant keys alone and together: only what peft implements and what saves as an adapter
    that loads, with the same answers, on the untouched base (docs/lora-variants.md)."""
    if lora.init not in LORA_INITS and not _PISSA_NITER.fullmatch(lora.init):
        raise ConfigError(
            "lora.init", f"unknown initialisation {lora.init!r}; use one of {', '.join(LORA_INITS)} or pissa_niter_N"
        )
    if lora.init == "loftq":
        raise ConfigError(
            "lora.init",
            "loftq is not supported: peft's LoftQ replaces the base weights by their quantized version, so the "
            "adapter answers right only on that quantized copy, never on the base you name; use pissa, or "
            "lora.quantize_base=4bit with the default init (QLoRA)",
        )
    if mutates_base(lora) and lora.use_dora:
        raise ConfigError(
            "lora.use_dora",
            f"cannot be combined with lora.init={lora.init}: peft converts a {lora_init_family(lora.init)} adapter "
            "back to plain LoRA on save by its A and B alone, without DoRA's magnitudes, so it would not load on the "
            "original base",
        )
    if mutates_base(lora) and lora.quantize_base != "none":
        raise ConfigError(
            "lora.quantize_base",
            f"cannot be combined with lora.init={lora.init}: the initialisation would be computed from, and taken out "
            "of, the quantized weights, and the saved adapter would not match the full-precision base (peft warns of "
            "the same gap)",
        )


def check_lora_for_model(lora, model_type: str, device: str) -> None:
    """The variant checks that need the model's type and the planned device; run before any weights load."""
    if lora_init_family(lora.init) == "olora" and families.has_conv1d_weights(model_type):
        raise ConfigError(
            "lora.init",
            "olora does not work on GPT-2's Conv1D layers in peft 0.21 (its QR ignores their transposed weights "
            "and the shapes break); use pissa or the default init",
        )
    if lora.quantize_base != "none":
        if device != "cuda":
            raise ConfigError(
                "lora.quantize_base",
                f"{lora.quantize_base} needs a CUDA GPU (bitsandbytes), and this run is planned on {device}; "
                "use lora.quantize_base=none",
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(
                "lora.quantize_base",
                f"{lora.quantize_base} needs bitsandbytes, which is not installed: pip install bitsandbytes "
                "(or pip install 'loraqa[qlora]')",
            )


# LoRA trains at 1e-5 to 1e-2; at 1 every step already overshoots, so above it is a typo (1e30, 2e4
# for 2e-4), never a setting. B's learning rate under LoRA+ (learning_rate x loraplus_lr_ratio) too.
MAX_LEARNING_RATE = 1.0


def documented_ranges() -> dict[str, str]:
    """Key -> the sane range its checks below enforce, in words, for `loraqa config`."""
    from loraqa.config.decoding import describe_ranges

    return {
        "training.learning_rate": f"in (0, {MAX_LEARNING_RATE:g}]",
        "training.loraplus_lr_ratio": f">= 1, and learning_rate x ratio <= {MAX_LEARNING_RATE:g}",
        "generation.decoding": describe_ranges(),
    }


def _check_training(config: RunConfig) -> None:
    t = config.training
    if not 0 < t.learning_rate <= MAX_LEARNING_RATE:
        raise ConfigError("training.learning_rate", f"must be in (0, {MAX_LEARNING_RATE:g}], got {t.learning_rate:g}")
    _positive("training.per_device_train_batch_size", t.per_device_train_batch_size)
    _positive("training.gradient_accumulation_steps", t.gradient_accumulation_steps)
    _positive("training.logging_steps", t.logging_steps)
    _positive("training.save_steps", t.save_steps)
    _positive("training.eval_steps", t.eval_steps, allow_none=True)
    _positive("training.torch_threads", t.torch_threads, allow_none=True)
    _seed("training.seed", t.seed)
    if t.loraplus_lr_ratio is not None and t.loraplus_lr_ratio < 1:
        raise ConfigError(
            "training.loraplus_lr_ratio",
            f"must be >= 1 (LoRA+ trains B faster than A: peft's ratio lr_B / lr_A), or null for off; got {t.loraplus_lr_ratio}",
        )
    if t.loraplus_lr_ratio is not None and t.learning_rate * t.loraplus_lr_ratio > MAX_LEARNING_RATE:
        raise ConfigError(
            "training.loraplus_lr_ratio",
            f"gives B a learning rate of {t.learning_rate * t.loraplus_lr_ratio:g} (learning_rate x ratio), over "
            f"{MAX_LEARNING_RATE:g}",
        )
    _check_scheduler(t)
    _check_report_to(t)
    if t.max_steps <= 0 and t.num_train_epochs <= 0:
        raise ConfigError("training.num_train_epochs", "must be > 0 unless training.max_steps is set")
    if t.max_steps == 0 or t.max_steps < -1:
        raise ConfigError("training.max_steps", f"must be > 0, or -1 to use num_train_epochs; got {t.max_steps}")
    if not 0.0 <= t.warmup_ratio < 1.0:
        raise ConfigError("training.warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio}")
    if t.warmup_steps < 0:
        raise ConfigError("training.warmup_steps", "must be >= 0")
    if t.weight_decay < 0:
        raise ConfigError("training.weight_decay", "must be >= 0")
    if t.max_grad_norm < 0:
        raise ConfigError("training.max_grad_norm", "must be >= 0 (0 disables clipping)")
    if t.save_total_limit is not None and t.save_total_limit < 1:
        raise ConfigError("training.save_total_limit", "must be >= 1, or null to keep every checkpoint")
    if t.eval_strategy == "steps" and t.eval_steps is None:
        raise ConfigError("training.eval_steps", "is required when training.eval_strategy is 'steps'")
    if t.load_best_model_at_end:
        if t.eval_strategy == "no":
            raise ConfigError("training.load_best_model_at_end", "needs training.eval_strategy 'steps' or 'epoch'")
        if t.save_strategy != t.eval_strategy:
            raise ConfigError(
                "training.save_strategy",
                f"must equal training.eval_strategy ('{t.eval_strategy}') when load_best_model_at_end is true",
            )
        if t.eval_strategy == "steps" and t.save_steps % (t.eval_steps or 1) != 0:
            raise ConfigError("training.save_steps", "must be a multiple of training.eval_steps to keep the best model")
    if t.early_stopping_patience is not None:
        if t.early_stopping_patience < 1:
            raise ConfigError("training.early_stopping_patience", "must be >= 1")
        if not t.load_best_model_at_end:
            raise ConfigError("training.early_stopping_patience", "needs training.load_best_model_at_end: true")


# The package each tracking backend needs, and the extra that installs it.
TRACKING_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "loraqa[wandb]"),
    "mlflow": ("mlflow", "loraqa[mlflow]"),
}


def tracking_backends(t) -> list[str]:
    """The backends `training.report_to` asks for, in order ([] for none)."""
    return [] if t.report_to == "none" else list(t.report_to)


def backend_installed(package: str) -> bool:
    """Whether `package` can be imported, found without importing it (mlflow takes seconds)."""
    return importlib.util.find_spec(package) is not None


def _check_report_to(t) -> None:
    """Known, distinct backends, each installed: a missing one stops here, at config time, not
    with a traceback when Trainer starts (after the baseline, in a claimed run directory)."""
    backends = tracking_backends(t)
    for name in backends:
        if name not in TRACKING_PACKAGES:
            raise ConfigError(
                "training.report_to", f"unknown backend {name!r}; use {', '.join(TRACKING_PACKAGES)}, [] or none"
            )
    if len(set(backends)) != len(backends):
        raise ConfigError("training.report_to", f"names a backend twice: {backends}")
    for name in backends:
        package, extra = TRACKING_PACKAGES[name]
        if not backend_installed(package):
            raise ConfigError("training.report_to", f"{name} is not installed; pip install {extra}")


# transformers' SchedulerType values loraqa can pass, spelt out so a config checks without importing
# transformers (seconds); tests/config compare this list with transformers' own.
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "greedy",
)
# These need `lr_scheduler_kwargs` (min_lr, num_decay_steps), which the config does not expose.
SCHEDULERS_NEEDING_KWARGS = ("cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay")


def _check_scheduler(t) -> None:
    names = SCHEDULERS
    if t.lr_scheduler_type in SCHEDULERS_NEEDING_KWARGS:
        raise ConfigError(
            "training.lr_scheduler_type",
            f"'{t.lr_scheduler_type}' needs scheduler arguments loraqa does not pass; use one of {', '.join(names)}",
        )
    if t.lr_scheduler_type not in names:
        raise ConfigError(
            "training.lr_scheduler_type",
            f"unknown scheduler '{t.lr_scheduler_type}'{did_you_mean(t.lr_scheduler_type, names)} "
            f"(use one of {', '.join(names)})",
        )
    if t.lr_scheduler_type == "reduce_lr_on_plateau" and t.eval_strategy == "no":
        raise ConfigError(
            "training.lr_scheduler_type", "reduce_lr_on_plateau needs training.eval_strategy 'steps' or 'epoch'"
        )


def _check_evaluation(config: RunConfig) -> None:
    e = config.evaluation
    _positive("evaluation.batch_size", e.batch_size)
    if config.training.metric_for_best_model == "eval_loss" and not e.with_loss:
        raise ConfigError("evaluation.with_loss", "must be true when training.metric_for_best_model is eval_loss")
    _positive("evaluation.n_best_size", e.n_best_size)
    _positive("generation.max_new_tokens", config.generation.max_new_tokens)
    from loraqa.config.decoding import parse_decoding  # local: keeps config import-light

    parse_decoding(config.generation.decoding, key="generation.decoding")


def check_position_limit(max_seq_length: int, model_name: str, hf_config) -> None:
    """Refuse a `model.max_seq_length` beyond the model's learned positions, read from its config
    before any weights load (a longer window ends in an index error deep in the embeddings).
    Models with relative positions (T5) have no such limit."""
    limit, attr = position_limit(hf_config)
    if limit is not None and max_seq_length > limit:
        raise ConfigError(
            "model.max_seq_length",
            f"{max_seq_length} is longer than '{model_name}' can read ({attr} = {limit}); use at most {limit}",
        )


def position_limit(hf_config) -> tuple[int | None, str]:
    """The longest window the model can read and the config attribute saying so; (None, '') for
    models with relative positions (T5)."""
    text_config = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    for attr in ("max_position_embeddings", "n_positions"):
        limit = getattr(text_config, attr, None)
        if isinstance(limit, int) and limit > 0:
            return limit - families.unusable_positions(getattr(text_config, "model_type", "")), attr
    return None, ""


def fit_window(model_config, hf_config) -> None:
    """Fit `model.max_seq_length` to the model's positions: a default the user did not set is capped,
    with `doc_stride` kept below it, and said in one line; a value the user set is refused as
    `check_position_limit` refuses it (the user chose it, the user changes it)."""
    limit, _ = position_limit(hf_config)
    if limit is None or model_config.max_seq_length <= limit or set_by_user(model_config, "max_seq_length"):
        check_position_limit(model_config.max_seq_length, model_config.name, hf_config)
        return
    notes = [f"model.max_seq_length {model_config.max_seq_length} -> {limit}"]
    model_config.max_seq_length = limit
    if model_config.doc_stride >= limit and not set_by_user(model_config, "doc_stride"):
        model_config.doc_stride = default_doc_stride(limit)
        notes.append(f"model.doc_stride -> {model_config.doc_stride}")
    say(f"note: '{model_config.name}' reads at most {limit} tokens: {', '.join(notes)} (set them to choose)")
