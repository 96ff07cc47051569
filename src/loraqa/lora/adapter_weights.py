"""What an adapter's weights file may hold, checked before peft loads any of it.

peft loads every tensor of adapter_model.safetensors whose name matches a module of the model, so
a file can carry base weights (`base_model.model.bert.embeddings.word_embeddings.weight` of zeros)
that silently replace the base's. Here the file is held to what its checked adapter_config.json
makes peft save: peft itself builds that adapter on a weightless ("meta") copy of the base, which
allocates nothing, and lists its tensors with `get_peft_model_state_dict`. That list includes the
LoRA factors of the target modules, DoRA magnitudes, LoRA biases, trainable token rows, the copies
in `modules_to_save` (loraqa's own too: the QA head, the inert segment embedding) and the biases
`bias` names; whole embedding matrices only where peft saves them (a grown vocabulary, or LoRA on
an embedding layer).

In order, each failure one `AdapterError` naming the tensor, and nothing is loaded until all pass:
1. the header (names, dtypes, shapes; no tensor read): floating-point dtypes only;
2. a rank some adapted layer can use, at most its smaller dimension (a larger one adds nothing and only allocates);
3. every tensor name in peft's list, with the shape peft's layer has;
4. every value finite (read one tensor at a time), as training keeps them.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from peft import MODEL_TYPE_TO_PEFT_MODEL_MAPPING, LoraConfig, PeftModel, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError, safe_open

from loraqa.errors import AdapterError
from loraqa.lora.adapter_files import WEIGHTS_FILE

# safetensors' names of the dtypes LoRA weights may have (training writes F32; peft can save F16/BF16).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_ADAPTER_NAME = "default"


def check_adapter_weights(directory: str | Path, lora_config: LoraConfig, model_class, hf_config, rows: int) -> None:
    """Refuse an adapter whose weights file holds anything its adapter_config.json does not account for.

    `model_class` and `hf_config` describe the base (its transformers class and config, unloaded);
    `rows` is the number of embedding rows the adapter was trained with (the grown vocabulary).
    """
    path = Path(directory) / WEIGHTS_FILE
    header = _read_header(path)
    for key, (dtype, _) in header.items():
        if dtype not in FLOAT_DTYPES:
            raise AdapterError(
                f"{path}: tensor '{key}' is {dtype}; adapter weights are floating point ({', '.join(FLOAT_DTYPES)})"
            )
    expected = expected_tensors(lora_config, model_class, hf_config, rows, Path(directory) / "adapter_config.json")
    for key, (_, shape) in header.items():
        if key not in expected:
            raise AdapterError(
                f"{path}: tensor '{key}' is not part of this adapter (its adapter_config.json accounts for "
                f"{_accounted_for(lora_config)}); an adapter may not replace base weights"
            )
        if shape != expected[key]:
            raise AdapterError(
                f"{path}: tensor '{key}' has shape {list(shape)}, but its adapter_config.json and the base "
                f"make it {list(expected[key])}"
            )
    _check_finite(path)


def expected_tensors(lora_config: LoraConfig, model_class, hf_config, rows: int, config_path: Path) -> dict:
    """{tensor name: shape} of everything peft may save for this adapter on this base."""
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # peft's and transformers' notes about building a model to throw away
        skeleton = model_class._from_config(copy.deepcopy(hf_config))
        grown = rows != skeleton.get_input_embeddings().weight.shape[0]
        if grown:
            skeleton.resize_token_embeddings(rows, mean_resizing=False)  # the mean needs real weights
        peft_class = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(lora_config.task_type, PeftModel)
        try:
            adapted = peft_class(skeleton, copy.deepcopy(lora_config), _ADAPTER_NAME)
        except (ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AdapterError(f"{config_path}: does not fit this base: {first[:300]}") from None
        _check_ranks(adapted, config_path)
        tensors = get_peft_model_state_dict(adapted, save_embedding_layers=False)
        if grown or adapts_an_embedding(adapted):
            # peft's "auto" saves the whole embedding layers in these two cases (and only these)
            tensors = get_peft_model_state_dict(adapted, save_embedding_layers=True)
    return {key: tuple(tensor.shape) for key, tensor in tensors.items()}


def _check_ranks(adapted, config_path: Path) -> None:
    """A rank above every adapted layer's smaller dimension adds nothing (the update's rank is bounded by
    it) and only allocates: an adapter saying r=100000 for 384-wide layers is refused before anything
    is built. The rule is training's (`lora/rank.py`): a rank some adapted layer can use is accepted,
    so every adapter training saves also loads."""
    layers = [
        (name.removeprefix("base_model.model."), module.r[_ADAPTER_NAME], module.in_features, module.out_features)
        for name, module in adapted.named_modules()
        if isinstance(module, LoraLayer) and _ADAPTER_NAME in module.r
    ]
    if layers and all(rank > min(fan_in, fan_out) for _, rank, fan_in, fan_out in layers):
        layer, rank, fan_in, fan_out = max(layers, key=lambda item: min(item[2], item[3]))
        raise AdapterError(
            f"{config_path}: rank {rank} is more than any adapted layer can use (the widest, '{layer}', is "
            f"{fan_in} x {fan_out}: at most {min(fan_in, fan_out)})"
        )


def adapts_an_embedding(adapted) -> bool:
    """Whether LoRA sits on an embedding layer of `adapted` (a PeftModel)."""
    from peft.tuners.lora import Embedding

    return any(isinstance(module, Embedding) for module in adapted.modules())


def _accounted_for(lora_config: LoraConfig) -> str:
    targets = lora_config.target_modules
    parts = [f"LoRA weights of {sorted(targets) if isinstance(targets, set) else targets!r}"]
    if lora_config.modules_to_save:
        parts.append(f"modules_to_save {list(lora_config.modules_to_save)}")
    if lora_config.bias != "none":
        parts.append(f"bias {lora_config.bias!r}")
    return ", ".join(parts)


def _read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype, shape)} from the safetensors header; no tensor is read."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            slices = {key: handle.get_slice(key) for key in handle.keys()}
            return {key: (piece.get_dtype(), tuple(piece.get_shape())) for key, piece in slices.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"{path}: corrupt ({str(exc).splitlines()[0]})") from None


def _check_finite(path: Path) -> None:
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            if not bool(torch.isfinite(handle.get_tensor(key)).all()):
                raise AdapterError(
                    f"{path}: tensor '{key}' holds NaN or infinite values; the adapter would answer nothing"
                )
