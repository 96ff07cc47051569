"""Load a model ready to answer: a base alone, or a base with a saved adapter.

With an adapter, the model section it was trained with (saved in its loraqa.json) is used, so the
prompt format, sequence lengths and formulation match training. For speed the adapter is merged
into the base weights (identical answers, no per-layer LoRA overhead); `merge=False` keeps it apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from loraqa.config.schema import ModelConfig
from loraqa.lora.adapter import load_adapter, read_adapter_meta
from loraqa.models.loading import BaseSpec, inspect_base, load_model, load_tokenizer
from loraqa.training.device import DevicePlan


@dataclass
class ReadyModel:
    model: object
    tokenizer: object
    spec: BaseSpec
    model_config: ModelConfig
    adapter: str | None


def model_config_for_adapter(adapter_dir: str | Path, fallback: ModelConfig, base_name: str | None = None) -> ModelConfig:
    """The model section the adapter was trained with (its base can be overridden by `base_name`)."""
    meta = read_adapter_meta(adapter_dir)
    saved = meta.get("model_config")
    config = ModelConfig(**saved) if isinstance(saved, dict) else dataclasses.replace(fallback)
    if base_name:
        config = dataclasses.replace(config, name=base_name)
    return config


def load_ready_model(
    model_config: ModelConfig, plan: DevicePlan, adapter_dir: str | None, merge: bool = True, spec: BaseSpec | None = None
) -> ReadyModel:
    spec = spec or inspect_base(model_config)
    if adapter_dir is None:
        tokenizer = load_tokenizer(spec, model_config)
        model = load_model(spec, model_config, tokenizer, plan.torch_device)
    else:
        meta = read_adapter_meta(adapter_dir)
        tokenizer = load_tokenizer(spec, model_config, source=str(adapter_dir))
        base = load_model(spec, dataclasses.replace(model_config, add_tokens=[]), tokenizer, plan.torch_device)
        model = load_adapter(base, tokenizer, adapter_dir, model_config.name, spec.hf_config, meta)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return ReadyModel(model, tokenizer, spec, model_config, adapter_dir)
