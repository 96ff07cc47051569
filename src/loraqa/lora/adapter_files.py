"""Read an adapter directory as data: every file checked against a strict schema before it is used.

An adapter directory comes from anyone (a colleague, a download), so nothing in it may switch on
remote code, change the base model, or make a library load something other than the adapter's own
weights and tokenizer data:

- `loraqa.json`: every key has a type (`META_SCHEMA`, `MODEL_SCHEMA`); an unknown or mistyped key is
  an `AdapterError` naming the file and the key. Its model section keeps only what describes how
  the adapter was trained (`ADAPTER_MODEL_KEYS`). `trust_remote_code` and `revision` (written by
  earlier loraqa versions) are read and never used: they come from the user's command or config.
- `adapter_config.json`: an object whose keys are the plain-LoRA fields of peft's LoraConfig with
  their types; the fields that make peft fetch or import something (`revision`, `megatron_core`,
  special initialisations...) must hold their inert defaults, and `auto_mapping` may only name a
  transformers class (it is never handed to peft). The `LoraConfig` is
  built here from the checked dict and handed to peft, which then does not read the file again.
- Tokenizer files: checked by `models.loading.load_adapter_tokenizer` (no `auto_map`, a tokenizer
  class of transformers itself, loaded with `trust_remote_code=False`).
- Every file in the directory (and in its subfolders, which transformers may read, e.g. chat
  templates) is a regular file of a sane size (`check_adapter_files`), before any is opened: a
  device, FIFO or folder where a file belongs, or a 40 GB file, is one line, not a hang.
- The numbers that size or scale the LoRA layers (`r`, `lora_alpha`, their patterns, `lora_dropout`)
  are checked as training checks them, before peft builds anything: a rank of 2**70 or a NaN scaling
  is refused here. What the weights file may hold is `lora.adapter_weights`' check, against the base.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args

from peft import LoraConfig
from safetensors import SafetensorError, safe_open

from loraqa.config.schema import FormulationName
from loraqa.errors import AdapterError
from loraqa.input_files import MAX_JSON_SIDECAR_BYTES, MIB, input_file_problem
from loraqa.models.loading import ADAPTER_TOKENIZER_FILES, MAX_TOKENIZER_FILE_BYTES
from loraqa.runs.files import ADAPTER_META_FILE

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
WEIGHTS_FILE = "adapter_model.safetensors"
META_FILE = ADAPTER_META_FILE
# Why: a LoRA adapter is megabytes; with whole embedding matrices saved (grown vocabulary,
# `modules_to_save`) of the largest bases loraqa trains, still well under 1 GB. Tokenizer files and
# any other file have the tokenizer files' limit (models.loading).
MAX_ADAPTER_WEIGHTS_BYTES = 4096 * MIB
# The files loraqa parses itself as JSON (the tokenizer's config is read by models.loading).
_JSON_FILES = ("adapter_config.json", META_FILE, "tokenizer_config.json")
# No layer of any model is this wide, so no rank a layer can use is larger: a cheap bound before the
# exact one (`lora.adapter_weights`: a layer's rank is at most its smaller dimension).
MAX_RANK = 65536
_FLOAT32_MAX = 3.4028234663852886e38

# loraqa.json, top level. `None` in a type means the key may be null.
META_SCHEMA: dict[str, Any] = {
    "loraqa_version": str,
    "base_model": str,
    "model_type": str,
    "hidden_size": int | None,
    "vocab_size": int,
    "embedding_rows": int,
    "base_vocab_size": int | None,
    "formulation": Literal[tuple(name for name in get_args(FormulationName) if name != "auto")],  # as resolved
    "version_2": bool,
    "quantize_base": Literal["none", "4bit", "8bit"],  # the base it trained on; merging always uses full precision
    "model_config": dict,
    "base": dict,  # BASE_SCHEMA; absent in adapters saved before loraqa recorded it
    "training": dict,  # TRAINING_SCHEMA: what the README shows; never used to load
    "no_answer_threshold": dict,  # THRESHOLD_SCHEMA: SQuAD v2's threshold chosen on validation (lora/no_answer.py)
}
META_REQUIRED = ("base_model", "model_type", "model_config")

# loraqa.json, "model_config": how the adapter was trained; these are used when it is loaded.
MODEL_SCHEMA: dict[str, Any] = {
    "name": str,
    "formulation": FormulationName,
    "closed_book": bool,
    "max_seq_length": int,
    "doc_stride": int,
    "max_answer_length": int,
    "use_token_type_ids": bool,
    "use_chat_template": bool | Literal["auto"],
    "add_tokens": list[str],
    "prompt_template": str | None,  # absent before adapters recorded it: the formulation's unrecorded template
    "no_answer_text": str,  # absent before adapters recorded it: "" (they learned to stop at once)
}
# What an adapter saved before a key was recorded was trained with.
UNRECORDED_MODEL_KEYS = {"no_answer_text": ""}
ADAPTER_MODEL_KEYS = tuple(MODEL_SCHEMA)

# loraqa.json, "no_answer_threshold": chosen by `metrics.abstention.best_threshold` on validation.
THRESHOLD_SCHEMA: dict[str, Any] = {"value": int | float, "chosen_on": str, "f1": int | float, "questions": int}

# loraqa.json, "base": where the base model comes from (models.offline.describe_base).
BASE_SCHEMA: dict[str, Any] = {
    "name": str,
    "kind": Literal["offline", "hub", "local"],
    "package": str,
    "package_version": str | None,
    "hub_id": str,
    "path": str,
}
# loraqa.json, "training": key hyperparameters, for people (lora.adapter.training_summary).
_SCALAR = str | int | float | bool | None
TRAINING_SCHEMA: dict[str, Any] = {
    key: _SCALAR | list[str]
    for key in (
        "train_data",
        "train_samples",
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "learning_rate",
        "batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
        "seed",
    )
}
# Written by loraqa before adapters stopped recording them; type-checked, never used.
IGNORED_MODEL_KEYS: dict[str, Any] = {"trust_remote_code": bool, "revision": str | None}

_STR_OR_LIST = str | list[str] | None
# adapter_config.json: the plain-LoRA fields of peft's LoraConfig, as peft 0.21 writes them.
LORA_SCHEMA: dict[str, Any] = {
    "peft_type": Literal["LORA"],
    "task_type": Literal["QUESTION_ANS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "SEQ_CLS", "FEATURE_EXTRACTION"]
    | None,
    "peft_version": str | None,
    "base_model_name_or_path": str | None,  # replaced by the base loraqa loads; never used to find one
    "inference_mode": bool,
    "r": int,
    "lora_alpha": int | float,
    "lora_dropout": int | float,
    "target_modules": _STR_OR_LIST,
    "exclude_modules": _STR_OR_LIST,
    "fan_in_fan_out": bool,
    "bias": Literal["none", "all", "lora_only"],
    "use_rslora": bool,
    "use_dora": bool,
    "lora_bias": bool,
    "ensure_weight_tying": bool,
    "modules_to_save": list[str] | None,
    "init_lora_weights": bool | Literal["gaussian"],  # the others compute from (or change) base weights
    "layers_to_transform": list[int] | int | None,
    "layers_pattern": _STR_OR_LIST,
    "rank_pattern": dict[str, int],
    "alpha_pattern": dict[str, int | float],
    "trainable_token_indices": list[int] | dict[str, list[int]] | None,
    "target_parameters": list[str] | None,
    "qalora_group_size": int,
}
# Fields that make peft fetch a repository, import a module or run a special method: only their
# inert values are accepted (what peft writes for a plain LoRA adapter).
LORA_INERT: dict[str, tuple] = {
    "revision": (None,),
    "megatron_config": (None,),
    "megatron_core": ("megatron.core", None),
    "loftq_config": ({}, None),
    "eva_config": (None,),
    "corda_config": (None,),
    "lora_ga_config": (None,),
    "velora_config": (None,),
    "monteclora_config": (None,),
    "arrow_config": (None,),
    "kasa_config": (None,),
    "use_bdlora": (None,),
    "layer_replication": (None,),
    "alora_invocation_tokens": (None,),
    "use_qalora": (False,),
}


def _check_threshold(value, meta_path: Path) -> None:
    threshold = _check_object(value, THRESHOLD_SCHEMA, meta_path, "no_answer_threshold.")
    if not isinstance(threshold.get("value"), (int, float)) or not math.isfinite(threshold["value"]):
        raise AdapterError(f"{meta_path}: key 'no_answer_threshold.value' must be a finite number")


def read_threshold(directory: str | Path) -> dict | None:
    """The checked `no_answer_threshold` of the adapter's loraqa.json (None without one), reading that
    file alone: answering reads it per request, after `read_adapter_meta` checked the whole adapter."""
    path = Path(directory) / META_FILE
    if not os.path.lexists(path):
        return None
    stamp = path.stat()
    return _cached_threshold(str(path), stamp.st_mtime_ns, stamp.st_size)


@functools.lru_cache(maxsize=64)  # the server answers many requests per adapter: read each version once
def _cached_threshold(path: str, _mtime_ns: int, _size: int) -> dict | None:
    meta = _check_object(_read_json(Path(path)), META_SCHEMA, Path(path), "")
    if "no_answer_threshold" not in meta:
        return None
    _check_threshold(meta["no_answer_threshold"], Path(path))
    return dict(meta["no_answer_threshold"])


def read_adapter_meta(directory: str | Path) -> dict:
    """Check an adapter directory is complete and its files valid; return its checked loraqa.json.

    Returns {} for an adapter without loraqa.json (made by plain peft). Raises `AdapterError`
    naming the file (and key) for anything missing, corrupt or outside the schema.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AdapterError(f"adapter directory not found: {directory}")
    for name in ADAPTER_FILES:
        if not os.path.lexists(directory / name):
            raise AdapterError(f"{directory / name}: missing (not a complete LoRA adapter)")
    check_adapter_files(directory)
    read_lora_config(directory)
    try:
        with safe_open(str(directory / "adapter_model.safetensors"), framework="pt") as handle:
            list(handle.keys())
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"{directory / 'adapter_model.safetensors'}: corrupt ({str(exc).splitlines()[0]})") from None
    meta_path = directory / META_FILE
    if not os.path.lexists(meta_path):
        return {}
    meta = _check_object(_read_json(meta_path), META_SCHEMA, meta_path, "")
    for key in META_REQUIRED:
        if key not in meta:
            raise AdapterError(f"{meta_path}: key '{key}' is missing")
    if "base" in meta:
        base = _check_object(meta["base"], BASE_SCHEMA, meta_path, "base.")
        for key in ("name", "kind"):
            if key not in base:
                raise AdapterError(f"{meta_path}: key 'base.{key}' is missing")
    if "training" in meta:
        _check_object(meta["training"], TRAINING_SCHEMA, meta_path, "training.")
    if "no_answer_threshold" in meta:
        _check_threshold(meta["no_answer_threshold"], meta_path)
    model = _check_object(meta["model_config"], {**MODEL_SCHEMA, **IGNORED_MODEL_KEYS}, meta_path, "model_config.")
    model = {**UNRECORDED_MODEL_KEYS, **model}
    for key in ("max_seq_length", "max_answer_length"):
        if key in model and model[key] < 1:
            raise AdapterError(f"{meta_path}: key 'model_config.{key}' must be at least 1, got {model[key]}")
    if model.get("doc_stride", 0) < 0:
        raise AdapterError(f"{meta_path}: key 'model_config.doc_stride' must not be negative")
    if model.get("trust_remote_code") is True:
        print(
            f"loraqa: {meta_path} says trust_remote_code=true; ignored: only your command or config can turn it on "
            "(model.trust_remote_code=true with --model NAME), for a base you name",
            file=sys.stderr,
        )
    meta["model_config"] = {key: value for key, value in model.items() if key in MODEL_SCHEMA}
    return meta


def read_lora_config(directory: str | Path, base_path: str | None = None) -> LoraConfig:
    """peft's LoraConfig built from the checked adapter_config.json (peft is not let read the file).

    `base_path` replaces the file's base_model_name_or_path: the base is what loraqa loaded.
    """
    path = Path(directory) / "adapter_config.json"
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise AdapterError(f"{path}: must be a JSON object, not {_type_name(raw)}")
    if raw.get("peft_type") != "LORA":
        raise AdapterError(
            f"{path}: key 'peft_type' must be \"LORA\" (loraqa loads LoRA adapters only), got {raw.get('peft_type')!r}"
        )
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "auto_mapping":
            _check_auto_mapping(value, path)  # a record of the model class; never handed to peft
            continue
        if key in LORA_INERT:
            if not any(value == inert and type(value) is type(inert) for inert in LORA_INERT[key]):
                raise AdapterError(
                    f"{path}: key '{key}' must be {' or '.join(json.dumps(v) for v in LORA_INERT[key])} "
                    f"(loraqa does not let an adapter fetch, import or initialise anything), got {json.dumps(value)[:80]}"
                )
            continue
        if key not in LORA_SCHEMA:
            raise AdapterError(f"{path}: unknown key '{key}' (not a plain LoRA field loraqa reads)")
        if not _matches(value, LORA_SCHEMA[key]):
            raise AdapterError(
                f"{path}: key '{key}' must be {_describe(LORA_SCHEMA[key])}, got {json.dumps(value)[:80]}"
            )
        checked[key] = value
    _check_lora_numbers(checked, path)
    checked["base_model_name_or_path"] = base_path
    checked["inference_mode"] = True
    checked.pop("peft_version", None)
    try:
        return LoraConfig(**checked)
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"{path}: {str(exc).strip().splitlines()[0][:200]}") from None


def check_adapter_files(directory: Path) -> None:
    """Every entry of the adapter directory, and of its subfolders, is a regular file (a link to one
    is fine) of a sane size for its kind: checked by name and size only, nothing is opened."""
    for path in _adapter_entries(directory):
        if path.name == WEIGHTS_FILE:
            limit = MAX_ADAPTER_WEIGHTS_BYTES
        elif path.name in _JSON_FILES:
            limit = MAX_JSON_SIDECAR_BYTES
        else:
            limit = MAX_TOKENIZER_FILE_BYTES
        problem = input_file_problem(path, limit)
        if problem:
            raise AdapterError(f"{path}: {problem} (an adapter directory holds regular files of sane sizes)")


def _adapter_entries(directory: Path) -> list[Path]:
    # One level of subfolders: transformers reads some (additional_chat_templates/); deeper ones nothing does.
    files = (*ADAPTER_FILES, META_FILE, *ADAPTER_TOKENIZER_FILES)
    entries = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir() and entry.name not in files:
            entries.extend(sub for sub in sorted(entry.iterdir()) if not sub.is_dir())
        else:
            entries.append(entry)
    return entries


def _check_lora_numbers(checked: dict, path: Path) -> None:
    """What training checks of the LoRA numbers (config/validate.py), for a file: ranks at least 1
    (and below `MAX_RANK`), alphas finite and positive, every scaling alpha/r (alpha/sqrt(r) with
    rsLoRA) a finite float32, dropout in [0, 1). A NaN or 1e300 alpha otherwise answers "" everywhere."""
    ranks = {"r": checked.get("r", 8)} | {f"rank_pattern.{k}": v for k, v in checked.get("rank_pattern", {}).items()}
    for key, rank in ranks.items():
        if not 1 <= rank <= MAX_RANK:
            raise AdapterError(f"{path}: key '{key}' must be a rank from 1 to {MAX_RANK}, got {rank}")
    alphas = {"lora_alpha": checked.get("lora_alpha", 8)}
    alphas |= {f"alpha_pattern.{k}": v for k, v in checked.get("alpha_pattern", {}).items()}
    smallest = min(ranks.values())
    for key, alpha in alphas.items():
        if not (math.isfinite(alpha) and alpha > 0):
            raise AdapterError(f"{path}: key '{key}' must be a finite number above 0, got {json.dumps(alpha)}")
        scaling = alpha / (math.sqrt(smallest) if checked.get("use_rslora") else smallest)
        if scaling > _FLOAT32_MAX:
            raise AdapterError(
                f"{path}: key '{key}' is {alpha:g}: the LoRA scaling {scaling:g} is not a finite float32 number"
            )
    dropout = checked.get("lora_dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise AdapterError(f"{path}: key 'lora_dropout' must be in [0, 1), got {json.dumps(dropout)}")


def _check_auto_mapping(value: Any, path: Path) -> None:
    """peft writes the base's class and module here (AutoPeftModel imports that module). Only a
    transformers module is accepted, and loraqa never uses the entry."""
    if value is None:
        return
    if (
        isinstance(value, dict)
        and set(value) <= {"base_model_class", "parent_library"}
        and all(isinstance(v, str) for v in value.values())
        and (value.get("parent_library") or "transformers.").startswith("transformers.")
    ):
        return
    raise AdapterError(
        f"{path}: key 'auto_mapping' must be null or name a transformers model class, got {json.dumps(value)[:80]}"
    )


def _read_json(path: Path) -> Any:
    problem = input_file_problem(path, MAX_JSON_SIDECAR_BYTES)
    if problem:
        raise AdapterError(f"{path}: {problem}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise AdapterError(f"{path}: corrupt ({exc or type(exc).__name__})") from None
    except OSError as exc:
        raise AdapterError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_object(value: Any, schema: dict[str, Any], path: Path, prefix: str) -> dict:
    if not isinstance(value, dict):
        where = f"key '{prefix.rstrip('.')}'" if prefix else "the file"
        raise AdapterError(f"{path}: {where} must be a JSON object, not {_type_name(value)}")
    for key, item in value.items():
        if key not in schema:
            raise AdapterError(f"{path}: unknown key '{prefix}{key}' (known: {', '.join(schema)})")
        if not _matches(item, schema[key]):
            raise AdapterError(
                f"{path}: key '{prefix}{key}' must be {_describe(schema[key])}, got {json.dumps(item)[:80]}"
            )
    return dict(value)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value has type `hint` exactly (no coercion: a file is not a command line)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, alternative) for alternative in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, float)
    return type(value) is hint  # str, bool, dict


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return f"an object of {_describe(args[1])}"
    names = {
        type(None): "null",
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "an object",
    }
    return names.get(hint, str(hint))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
