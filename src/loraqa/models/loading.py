"""Load a base model and tokenizer for a formulation, from an offline name, a hub id or a directory.

Config first (cheap), so the formulation and every model-dependent config check are settled before
any weights are read. Weights load in fp32 unless the caller asks for a half dtype (the frozen base on a
capable GPU, `device.frozen_base_dtype`); trainable weights are kept fp32 either way, so mixed precision
is autocast over fp32 master weights (Trainer's bf16/fp16) and LoRA updates stay exact.

A base that an adapter names (its loraqa.json), rather than the user, is data from the adapter:
`base_named_by_adapter` admits only a local directory of safetensors weights (an offline model, a
directory, or a hub model already in the local cache), so such a base never reaches the network or
a pickle loader. The hub is contacted only for a base the user names (`--model`, `model.name=`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from loraqa.config.schema import ModelConfig
from loraqa.errors import AdapterError, LoraqaError
from loraqa.formulations import Formulation, choose_formulation
from loraqa.input_files import MAX_JSON_SIDECAR_BYTES, MIB, input_file_problem
from loraqa.models.offline import OFFLINE_MODELS, resolve_model_path


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


def load_tokenizer(spec: BaseSpec, model_config: ModelConfig):
    """The base tokenizer, with `add_tokens` added, prepared for the formulation.

    The user's `trust_remote_code` and `revision` apply here: this is the base the user named.
    """
    tokenizer = AutoTokenizer.from_pretrained(
        spec.path, revision=model_config.revision, trust_remote_code=model_config.trust_remote_code
    )
    if model_config.add_tokens:
        tokenizer.add_tokens(list(model_config.add_tokens))
    spec.formulation.prepare_tokenizer(tokenizer)
    return tokenizer


# What `save_pretrained` of a transformers 5 tokenizer writes and loading needs.
ADAPTER_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
# Why: the largest tokenizer.json files are tens of MB (Gemma's: 33 MB); a vocabulary or merges file less.
MAX_TOKENIZER_FILE_BYTES = 512 * MIB


def load_adapter_tokenizer(spec: BaseSpec, directory: str | Path):
    """The tokenizer saved with an adapter, read as data: never its code.

    An adapter directory is not the base the user chose to trust, so whatever the user's
    `trust_remote_code`, the tokenizer here is loaded with it off, through a tokenizer class of
    transformers itself, named by `tokenizer_class`; a tokenizer_config.json with an `auto_map` (custom
    code) or naming any other class is refused, as are missing or corrupt files (`AdapterError`).
    """
    directory = Path(directory)
    for name in ADAPTER_TOKENIZER_FILES:
        if not (directory / name).exists():
            raise AdapterError(f"{directory / name}: missing (the adapter's tokenizer is saved with it)")
    for name, limit in zip(ADAPTER_TOKENIZER_FILES, (MAX_JSON_SIDECAR_BYTES, MAX_TOKENIZER_FILE_BYTES), strict=True):
        problem = input_file_problem(directory / name, limit)
        if problem:
            raise AdapterError(f"{directory / name}: {problem}")
    config_path = directory / "tokenizer_config.json"
    try:
        tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise AdapterError(f"{config_path}: corrupt ({exc or type(exc).__name__})") from None
    if not isinstance(tokenizer_config, dict):
        raise AdapterError(f"{config_path}: must be a JSON object")
    if "auto_map" in tokenizer_config:
        raise AdapterError(
            f"{config_path}: has an 'auto_map' (custom tokenizer code); loraqa never runs code from an adapter directory"
        )
    tokenizer_class = _transformers_tokenizer_class(tokenizer_config.get("tokenizer_class"), config_path)
    try:
        tokenizer = tokenizer_class.from_pretrained(str(directory), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(f"{directory}: cannot load the adapter's tokenizer: {first[:200]}") from None
    spec.formulation.prepare_tokenizer(tokenizer)
    return tokenizer


def _transformers_tokenizer_class(name, config_path: Path):
    """The transformers class `name` stands for; refused when it is not one of transformers' own."""
    if not isinstance(name, str) or not name:
        raise AdapterError(f"{config_path}: key 'tokenizer_class' must name a transformers tokenizer class")
    found = tokenizer_class_from_name(name)
    if (
        not isinstance(found, type)
        or not issubclass(found, PreTrainedTokenizerBase)
        or not found.__module__.startswith("transformers.")
    ):
        raise AdapterError(f"{config_path}: key 'tokenizer_class' is {name!r}, not a tokenizer class of transformers")
    return found


def load_model(
    spec: BaseSpec,
    model_config: ModelConfig,
    tokenizer,
    device: torch.device,
    quantize: str = "none",
    dtype: torch.dtype = torch.float32,
):
    """Base model weights in `dtype` (fp32 unless asked) on `device`; embeddings grown to the tokenizer
    when tokens were added; segment ids made inert when the formulation asks
    (`Formulation.makes_segment_ids_inert`).

    `quantize` "4bit"/"8bit" (QLoRA, `lora.quantize_base`, checked to be on CUDA with bitsandbytes):
    the frozen weights load quantized by bitsandbytes, NF4 for 4 bits, computing in `dtype` (the
    run's precision: bf16 only where the card has it natively)."""
    auto_class = spec.formulation.auto_model_class()
    extra = quantization_kwargs(quantize, device, dtype)
    quantized = bool(extra)  # a quantized base's other weights stay fp32
    if safetensors_weights(Path(spec.path)):
        extra["use_safetensors"] = True  # what transformers picks anyway; said, so a pickle beside them is never read
    try:
        model = auto_class.from_pretrained(
            spec.path,
            revision=model_config.revision,
            trust_remote_code=model_config.trust_remote_code,
            dtype=torch.float32 if quantized else dtype,
            **extra,
        )
    except OSError as exc:
        raise LoraqaError(f"cannot load model '{model_config.name}': {str(exc).splitlines()[0]}") from None
    if spec.formulation.makes_segment_ids_inert():
        ignore_segment_ids(model)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model if "device_map" in extra else model.to(device)  # a quantized model is placed by device_map


def base_named_by_adapter(name: str, revision: str | None, meta_path: Path) -> str:
    """Where to load the base that an adapter's loraqa.json (`meta_path`) names: an offline model's
    name, or a local directory holding safetensors weights. A hub id is looked up in the local cache
    only (its snapshot directory); anything else is an `AdapterError` saying to name the base with --model.
    """
    if name in OFFLINE_MODELS:
        return name  # an installed package's own safetensors (models/offline.py)
    path = Path(name).expanduser()
    if path.is_dir():
        _require_safetensors(path, name, meta_path)
        return name
    if path.is_absolute() or name.startswith((".", "~")):
        raise AdapterError(
            f"{meta_path}: names base {name!r}, which is not a directory here; give the base with --model"
        )
    snapshot = _cached_hub_snapshot(name, revision)
    if snapshot is None:
        raise AdapterError(
            f"{meta_path}: names base {name!r}, which is not in the local model cache; loraqa contacts the model "
            f"hub only for a base you name: add --model {name}"
        )
    _require_safetensors(snapshot, name, meta_path)
    return str(snapshot)


def safetensors_weights(directory: Path) -> Path | None:
    """The safetensors weights file (or shard index) of a model directory, if it has one."""
    for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME):
        if (directory / name).is_file():
            return directory / name
    return None


def _require_safetensors(directory: Path, name: str, meta_path: Path) -> None:
    weights = safetensors_weights(directory)
    if weights is None:
        raise AdapterError(
            f"{meta_path}: names base {name!r}, a directory without safetensors weights ({SAFE_WEIGHTS_NAME}); "
            "loraqa loads a base an adapter names only from safetensors, never a pickle: give the base with --model"
        )
    problem = input_file_problem(directory / CONFIG_NAME, MAX_JSON_SIDECAR_BYTES)
    if problem:
        raise AdapterError(f"{meta_path}: names base {name!r}, whose {CONFIG_NAME} {problem}")


def _cached_hub_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The local cache's snapshot of a hub model, found without any network request; None if absent."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), not a repo id (HFValidationError)
        return None


def quantization_kwargs(quantize: str, device: torch.device, compute_dtype: torch.dtype = torch.float32) -> dict:
    """from_pretrained's arguments for a bitsandbytes-quantized base computing in `compute_dtype`; {} for
    full precision."""
    if quantize == "none":
        return {}
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config, "device_map": {"": device}}


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
