"""Load a base model and tokenizer for a formulation, from an offline name, a hub id or a directory.

Config first (cheap), so the formulation and every model-dependent config check are settled before
any weights are read. Weights load in fp32: mixed precision on GPUs is autocast over fp32 master
weights (Trainer's bf16), which keeps LoRA updates exact.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoTokenizer

from loraqa.config.schema import ModelConfig
from loraqa.errors import LoraqaError
from loraqa.formulations import Formulation, choose_formulation
from loraqa.models.offline import resolve_model_path


@dataclass
class BaseSpec:
    """What is known about a base model before its weights are loaded."""

    name: str  # as the user wrote it
    path: str  # resolved directory or hub id
    hf_config: object
    formulation: Formulation

    @property
    def model_type(self) -> str:
        return self.hf_config.model_type


def inspect_base(model_config: ModelConfig) -> BaseSpec:
    """Resolve the model name and read its config; choose the formulation. No weights are loaded."""
    path = resolve_model_path(model_config.name)
    if model_config.trust_remote_code:
        print(f"loraqa: trust_remote_code is ON for {model_config.name}: its repository code will run", file=sys.stderr)
    try:
        hf_config = AutoConfig.from_pretrained(
            path, revision=model_config.revision, trust_remote_code=model_config.trust_remote_code
        )
    except OSError as exc:
        raise LoraqaError(f"cannot load model '{model_config.name}': {str(exc).splitlines()[0]}") from None
    except ValueError as exc:
        raise LoraqaError(f"model '{model_config.name}': {str(exc).splitlines()[0]}") from None
    return BaseSpec(model_config.name, path, hf_config, choose_formulation(model_config, hf_config))


def load_tokenizer(spec: BaseSpec, model_config: ModelConfig, source: str | None = None):
    """The base tokenizer (or the one saved with an adapter, `source`), prepared for the formulation."""
    tokenizer = AutoTokenizer.from_pretrained(
        source or spec.path,
        revision=None if source else model_config.revision,
        trust_remote_code=model_config.trust_remote_code,
    )
    if source is None and model_config.add_tokens:
        tokenizer.add_tokens(list(model_config.add_tokens))
    spec.formulation.prepare_tokenizer(tokenizer)
    return tokenizer


def load_model(spec: BaseSpec, model_config: ModelConfig, tokenizer, device: torch.device):
    """Base model weights in fp32 on `device`; embeddings grown to the tokenizer when tokens were added;
    for an extractive model, segment ids made inert unless `use_token_type_ids` asks for them."""
    auto_class = spec.formulation.auto_model_class()
    try:
        model = auto_class.from_pretrained(
            spec.path,
            revision=model_config.revision,
            trust_remote_code=model_config.trust_remote_code,
            dtype=torch.float32,
        )
    except OSError as exc:
        raise LoraqaError(f"cannot load model '{model_config.name}': {str(exc).splitlines()[0]}") from None
    if spec.formulation.name == "extractive" and not model_config.use_token_type_ids:
        ignore_segment_ids(model)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device)


def ignore_segment_ids(model) -> bool:
    """Copy segment 0's token-type embedding over the others, so segment ids change nothing.

    Done on the base weights (not by dropping `token_type_ids` from batches) so that every way of
    running the model agrees: training, evaluation, the merged model `loraqa merge` writes, and a
    user calling it with a tokenizer's full output. Returns whether any weight changed.
    """
    changed = False
    for name, module in model.named_modules():
        if name.endswith("token_type_embeddings") and module.weight.shape[0] > 1:
            with torch.no_grad():
                rest, first = module.weight[1:], module.weight[:1]
                if not torch.equal(rest, first.expand_as(rest)):
                    rest.copy_(first.expand_as(rest))
                    changed = True
    return changed
