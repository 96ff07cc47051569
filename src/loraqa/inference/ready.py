"""Load a model ready to answer: a base alone, or a base with a saved adapter.

`load_for_answering` is the one way in, for every command and service that answers (predict, eval,
merge, the Python API, the server): the adapter's model section -> the base inspected -> the device
planned -> the weights loaded. `answer_setup` is its first three steps alone, for a caller that must
know the base before loading anything (the server groups adapters by base).

With an adapter, the model section it was trained with (its checked loraqa.json) is used, so the
prompt format, formulation and vocabulary match training; the lengths that only bound how text is
windowed or answered may be changed on the command line (`INFERENCE_MODEL_KEYS`). What may run
code or fetch something (`trust_remote_code`, `revision`) comes from the user alone and applies to
the base the user named. A base only the adapter names is loaded from this machine's safetensors
(`models.loading.base_named_by_adapter`): never from the hub, never from a pickle. For speed the
adapter is merged into the base weights (identical answers, no per-layer LoRA overhead);
`merge=False` keeps it apart. On a CUDA card the model answers in the plan's half precision
(`device.answer_dtype`): the adapter is merged in fp32 first, then the whole model is cast, so the
small LoRA update is not rounded away by merging into bf16 weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loraqa.config.schema import ModelConfig, RunConfig, replace_keeping_set_keys
from loraqa.config.validate import fit_window
from loraqa.device import DevicePlan, answer_dtype, plan_device
from loraqa.errors import ConfigError
from loraqa.formulations import FORMULATIONS
from loraqa.inference.onnx_model import is_onnx_export, load_onnx_parts
from loraqa.lora.adapter import META_FILE, check_same_architecture, load_adapter, read_adapter_meta
from loraqa.models.loading import (
    BaseSpec,
    base_named_by_adapter,
    inspect_base,
    load_adapter_tokenizer,
    load_model,
    load_tokenizer,
)

# model.* keys a user may change when answering with an adapter: they bound windows and answers,
# and do not change what the adapter's weights mean.
INFERENCE_MODEL_KEYS = ("max_seq_length", "doc_stride", "max_answer_length")
# The user's own decisions about the base (never read from an adapter).
USER_MODEL_KEYS = ("trust_remote_code", "revision")


@dataclass
class ReadyModel:
    model: Any  # a transformers model, a PeftModel or an ONNX stand-in (inference/onnx_model.py)
    tokenizer: Any
    spec: BaseSpec
    model_config: ModelConfig
    adapter: str | None
    version_2: bool = False  # the adapter was trained with unanswerable questions (SQuAD v2)


@dataclass(frozen=True)
class AnswerSetup:
    """What loading a model to answer needs, decided before any weights load."""

    model_config: ModelConfig  # the adapter's own (`model_config_for_adapter`), or the user's without one
    spec: BaseSpec
    plan: DevicePlan
    adapter: str | None


def model_override_keys(overrides: Iterable[str]) -> frozenset[str]:
    """The model.* keys that `key=value` overrides set (what an adapter's own settings may meet)."""
    keys = (item.partition("=")[0].strip() for item in overrides if "=" in item)
    return frozenset(key[len("model.") :] for key in keys if key.startswith("model."))


def answer_setup(
    config: RunConfig, adapter: str | Path | None = None, *, base_name: str | None = None, overrides: Iterable[str] = ()
) -> AnswerSetup:
    """The model section to answer with, the base it names and the device: no weights loaded.

    With `adapter`: the adapter's model section (`model_config_for_adapter`; `overrides` are the
    user's `key=value` settings, whose model.* keys it checks). Without: `config.model`, on the base
    `base_name` when given. The device is `config.training`'s plan for that base.
    """
    if adapter:
        model_config = model_config_for_adapter(adapter, config.model, base_name, model_override_keys(overrides))
    else:
        model_config = replace_keeping_set_keys(config.model, name=base_name) if base_name else config.model
    spec = inspect_base(model_config)
    plan = plan_device(config.training.device, config.training.precision, spec.model_type)
    return AnswerSetup(model_config, spec, plan, str(adapter) if adapter else None)


def load_for_answering(
    config: RunConfig,
    adapter: str | Path | None = None,
    *,
    base_name: str | None = None,
    overrides: Iterable[str] = (),
    setup: AnswerSetup | None = None,
    merge: bool = True,
    full_precision: bool = False,
    tokenizer=None,
) -> ReadyModel:
    """A model ready to answer: the base alone, or base + `adapter` (see `answer_setup` for the settings).

    `setup`: the `answer_setup` of these same arguments when the caller made it already (it is not
    made twice). `merge`, `full_precision`, `tokenizer`: as `load_ready_model` takes them.
    """
    setup = setup or answer_setup(config, adapter, base_name=base_name, overrides=overrides)
    return load_ready_model(
        setup.model_config,
        setup.plan,
        setup.adapter,
        merge=merge,
        spec=setup.spec,
        tokenizer=tokenizer,
        full_precision=full_precision,
    )


def load_base_tokenizer(setup: AnswerSetup):
    """The tokenizer of a setup without an adapter, for a caller that needs it before the weights
    (pass it back as `load_for_answering(..., tokenizer=)`, so it is loaded once)."""
    if setup.adapter is not None:
        raise ValueError("load_base_tokenizer: an adapter brings its own tokenizer")
    return load_tokenizer(setup.spec, setup.model_config)


def model_config_for_adapter(
    adapter_dir: str | Path,
    user: ModelConfig,
    base_name: str | None = None,
    overridden: frozenset[str] | set[str] = frozenset(),
) -> ModelConfig:
    """The model section to answer with `adapter_dir`.

    From the adapter's loraqa.json: how it was trained (formulation, prompt, vocabulary, lengths).
    From the user (`user`): trust_remote_code and revision, and the `INFERENCE_MODEL_KEYS` named in
    `overridden` (the model.* keys of the command line). Any other overridden model key that differs
    from the adapter's is a `ConfigError`: the adapter's weights only mean something with the settings
    it was trained with. `base_name` (--model) replaces the adapter's base. A base the adapter names
    (no --model, no model.name=) becomes the local directory it loads from, or an `AdapterError`.
    """
    meta = read_adapter_meta(adapter_dir)
    saved = meta.get("model_config")
    if not saved:  # plain peft, no loraqa.json: the user's model section is all there is
        config = dataclasses.replace(user)
        return dataclasses.replace(config, name=base_name) if base_name else config
    config = ModelConfig(**{"prompt_template": _unrecorded_template(meta, saved), **saved})
    for key in sorted(overridden):
        if (
            key in INFERENCE_MODEL_KEYS
            or key in USER_MODEL_KEYS
            or getattr(user, key, None) == getattr(config, key, None)
        ):
            continue
        if key == "name":
            raise ConfigError(
                "model.name", f"the adapter's base is {config.name!r}; use --model NAME to answer with another base"
            )
        raise ConfigError(
            f"model.{key}",
            f"the adapter was trained with {getattr(config, key, None)!r} (its loraqa.json) and its weights mean "
            f"nothing otherwise; only {', '.join('model.' + k for k in INFERENCE_MODEL_KEYS)} can change at inference",
        )
    safe = {key: getattr(user, key) for key in INFERENCE_MODEL_KEYS if key in overridden}
    config = dataclasses.replace(config, **safe, trust_remote_code=user.trust_remote_code, revision=user.revision)
    if base_name:
        # Another base: its architecture first, before settings of this adapter's formulation are checked on it.
        other = inspect_base(dataclasses.replace(config, name=base_name, formulation="auto", prompt_template=None))
        check_same_architecture(adapter_dir, meta, base_name, other.hf_config)
        return dataclasses.replace(config, name=base_name)
    if user.trust_remote_code:
        # The adapter named this base; trusting code is a decision about a base the user names.
        raise ConfigError(
            "model.trust_remote_code",
            f"applies only to a base you name: add --model {config.name} to trust that base's code",
        )
    if "name" in overridden:
        return config  # model.name=NAME on the command line, equal to the adapter's: the user names it
    # The adapter named this base: safetensors from this machine only, never the hub or a pickle.
    local = base_named_by_adapter(config.name, config.revision, Path(adapter_dir) / META_FILE)
    return dataclasses.replace(config, name=local)


def _unrecorded_template(meta: dict, saved: dict) -> str | None:
    """The prompt template of an adapter saved before loraqa recorded one (used only when `saved` lacks it)."""
    formulation = FORMULATIONS.get(meta.get("formulation"))
    return formulation.unrecorded_prompt_template(ModelConfig(**saved)) if formulation else None


def load_onnx_export(directory: str | Path) -> ReadyModel:
    """The ONNX export in `directory` (`loraqa export --format onnx`), answering with ONNX Runtime."""
    model, tokenizer, spec, config, where, version_2 = load_onnx_parts(directory)
    return ReadyModel(model, tokenizer, spec, config, str(where), version_2=version_2)


def load_ready_model(
    model_config: ModelConfig,
    plan: DevicePlan,
    adapter_dir: str | None,
    merge: bool = True,
    spec: BaseSpec | None = None,
    tokenizer=None,
    full_precision: bool = False,
) -> ReadyModel:
    """`tokenizer`: the base's, when the caller already loaded it with `load_tokenizer` (no adapter only).
    `full_precision`: fp32 whatever the device (`loraqa merge` writes the model it loads)."""
    if adapter_dir is None and is_onnx_export(model_config.name):  # `loraqa export --format onnx`: ONNX Runtime
        return load_onnx_export(model_config.name)
    if tokenizer is not None and adapter_dir is not None:
        raise ValueError("load_ready_model: an adapter brings its own tokenizer; pass tokenizer only without one")
    spec = spec or inspect_base(model_config)
    dtype = torch.float32 if full_precision else answer_dtype(plan)
    # Checked here as well as in training: predict, eval and serve may widen the window of an adapter
    # (`INFERENCE_MODEL_KEYS`), and a window past the positions fails deep in the embeddings.
    fit_window(model_config, spec.hf_config)
    if adapter_dir is None:
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec, model_config)
        model = load_model(spec, model_config, tokenizer, plan.torch_device, dtype=dtype)
        model.eval()
        return ReadyModel(model, tokenizer, spec, model_config, None)
    meta = read_adapter_meta(adapter_dir)  # every adapter file checked before anything is loaded from it
    tokenizer = load_adapter_tokenizer(spec, adapter_dir)
    base = load_model(spec, dataclasses.replace(model_config, add_tokens=[]), tokenizer, plan.torch_device)
    model = load_adapter(base, tokenizer, adapter_dir, model_config.name, spec.hf_config, meta)
    if merge:
        model = model.merge_and_unload()
    model.to(dtype)  # after merging in fp32 (a no-op on CPU and MPS)
    model.eval()
    return ReadyModel(model, tokenizer, spec, model_config, adapter_dir, version_2=bool(meta.get("version_2")))
