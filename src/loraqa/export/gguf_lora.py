"""`loraqa export --format gguf-lora`: the adapter alone as a GGUF LoRA, for llama.cpp's `--lora` on the
user's own GGUF of the same base.

The layout is llama.cpp's convert_lora_to_gguf.py: `general.type` "adapter", `adapter.type` "lora",
`adapter.lora.alpha`, and per adapted weight `<gguf name>.lora_a` (r x in) and `.lora_b` (out x r).
llama.cpp scales by alpha / r; an rsLoRA adapter (scale alpha / sqrt r) is written with the alpha that
gives its scale. The q/k projections' B rows are permuted into GGML's rotary layout, as the merged
weights are (`gguf_model.permute_rotary`). What llama.cpp's LoRA cannot carry is refused: DoRA,
whole modules saved with the adapter (a new QA head, resized embeddings), per-layer ranks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from loraqa.atomic import atomic_directory
from loraqa.errors import LoraqaError
from loraqa.export.gguf_model import check_gguf_architecture, permute_rotary

GGUF_LORA_FILE = "adapter.gguf"


def write_gguf_lora(adapter: str, target: Path, hf_config) -> Path:
    """Write `adapter` (for the base whose config is `hf_config`) as `target/adapter.gguf` with a README."""
    import gguf
    from safetensors.numpy import load_file

    from loraqa.lora.adapter_files import read_adapter_meta

    meta = read_adapter_meta(adapter)  # every adapter file checked first
    check_gguf_architecture(str(meta.get("model_type")))
    settings = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    _refuse_unsupported(settings)
    base_config = hf_config.to_dict()
    weights = load_file(str(Path(adapter) / "adapter_model.safetensors"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, base_config["num_hidden_layers"])
    r = int(settings["r"])
    alpha = float(settings["lora_alpha"]) * (math.sqrt(r) if settings.get("use_rslora") else 1.0)
    with atomic_directory(target) as tmp:
        writer = gguf.GGUFWriter(str(tmp / GGUF_LORA_FILE), "llama")
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", alpha)
        for key in sorted(weights):
            if ".lora_A." not in key:
                continue
            module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
            name = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if name is None:
                raise LoraqaError(f"GGUF LoRA export: no llama.cpp tensor for {module}")
            a = weights[key].astype(np.float32)
            b = weights[key.replace(".lora_A.", ".lora_B.")].astype(np.float32)
            if module.endswith("q_proj"):
                b = permute_rotary(b, base_config["num_attention_heads"])
            elif module.endswith("k_proj"):
                b = permute_rotary(b, base_config.get("num_key_value_heads") or base_config["num_attention_heads"])
            writer.add_tensor(f"{name}.lora_a", a)
            writer.add_tensor(f"{name}.lora_b", b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        (tmp / "README.md").write_text(_readme(meta, alpha, r), encoding="utf-8")
    return target


def _refuse_unsupported(settings: dict) -> None:
    problems = []
    if settings.get("use_dora"):
        problems.append("DoRA (use_dora)")
    if settings.get("modules_to_save"):
        problems.append(f"modules saved whole ({', '.join(settings['modules_to_save'])})")
    if settings.get("rank_pattern") or settings.get("alpha_pattern"):
        problems.append("per-layer ranks")
    if problems:
        raise LoraqaError(
            f"llama.cpp's LoRA format cannot carry {', '.join(problems)}; use --format gguf for the merged model"
        )


def _readme(meta: dict, alpha: float, r: int) -> str:
    return (
        f"# LoRA adapter for {meta.get('base_model')}, exported by loraqa as GGUF\n\n"
        f"Rank {r}, alpha {alpha:g} (llama.cpp scales by alpha / rank). Apply it to a GGUF of the same base:\n\n"
        "```\nllama-cli -m BASE.gguf --lora adapter.gguf --temp 0 -n 24 -p PROMPT\n```\n\n"
        "The prompt is the one loraqa trained with (the adapter's README); stop at the first newline.\n"
    )
