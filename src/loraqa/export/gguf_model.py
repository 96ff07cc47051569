"""`loraqa export --format gguf`: a merged Llama-family model as one GGUF file, for llama.cpp and Ollama.

The reverse of `models.offline.convert_gguf` (which reads SmolLM2's GGUF through transformers): the
tensor names come from the `gguf` package's own map for the llama architecture, and the query/key
projections are permuted into GGML's rotary layout as llama.cpp's convert_hf_to_gguf.py does. The
tokenizer goes in as llama.cpp's byte-level BPE ("gpt2" model: tokens, types, merges, special ids)
with the chat template loraqa trained with; BOS is added only where the tokenizer adds it, so
llama.cpp tokenizes prompts as loraqa did. f32 and f16 keep the weights; q8_0 (the `gguf` package's
own quantizer) rounds the 2-D weights to 8 bits per value in blocks of 32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from loraqa.atomic import atomic_directory
from loraqa.errors import LoraqaError

GGUF_FILE = "model.gguf"
LLAMA_FAMILY = ("llama",)  # model_type values written with llama.cpp's "llama" architecture
GGUF_TYPES = ("f32", "f16", "q8_0")


def check_gguf_architecture(model_type: str) -> None:
    """One line naming what is supported, before anything is loaded."""
    if model_type not in LLAMA_FAMILY:
        raise LoraqaError(
            f"GGUF export supports Llama-family models (model_type {', '.join(LLAMA_FAMILY)}: SmolLM2, "
            f"Llama checkpoints), not {model_type}; use --format onnx for this model"
        )


def permute_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotate-half layout of a q/k projection to GGML's interleaved one (llama.cpp's `permute`)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_gguf(ready, target: Path, gguf_type: str = "f16") -> Path:
    """Write `ready`'s merged model as `target/model.gguf` with a Modelfile and a README (whole or not at all)."""
    import gguf

    from loraqa.export.modelfile import modelfile, ollama_template

    if gguf_type not in GGUF_TYPES:
        raise LoraqaError(f"--gguf-type {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}")
    check_gguf_architecture(ready.spec.model_type)
    template = ollama_template(ready)
    with atomic_directory(target) as tmp:
        writer = gguf.GGUFWriter(str(tmp / GGUF_FILE), "llama")
        _write_metadata(writer, ready.model.config, gguf_type)
        _write_tokenizer(writer, ready.tokenizer, ready.model.config.vocab_size)
        _write_tensors(writer, ready.model, gguf_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        (tmp / "Modelfile").write_text(modelfile(GGUF_FILE, template), encoding="utf-8")
        (tmp / "README.md").write_text(_readme(ready, gguf_type), encoding="utf-8")
    return target


def _write_metadata(writer, config, gguf_type: str) -> None:
    import gguf

    heads = config.num_attention_heads
    writer.add_name("loraqa export")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads or heads)
    writer.add_rope_dimension_count(getattr(config, "head_dim", None) or config.hidden_size // heads)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[gguf_type]
    writer.add_file_type(file_type)


def _rope_theta(config) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    scaling = parameters.get("rope_type", "default")
    if scaling not in ("default", None):
        raise LoraqaError(f"GGUF export writes plain RoPE; this model uses {scaling} scaling, which it does not write")
    return parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0))


def _write_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE":
        raise LoraqaError(f"GGUF export writes byte-level BPE tokenizers; this one is {backend['model']['type']}")
    vocab = tokenizer.get_vocab()
    by_id = {index: token for token, index in vocab.items()}
    added = {t.content: t.special for t in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:  # rows past the tokenizer (a vocabulary padded to a multiple of 64)
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if added[token] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = backend["model"]["merges"]
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    for name, add in (
        ("bos", writer.add_bos_token_id),
        ("eos", writer.add_eos_token_id),
        ("pad", writer.add_pad_token_id),
        ("unk", writer.add_unk_token_id),
    ):
        value = getattr(tokenizer, f"{name}_token_id")
        if value is not None:
            add(value)
    writer.add_add_bos_token(_adds_bos(tokenizer))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


def _pre_tokenizer(tokenizer) -> str:
    """llama.cpp's name for the pre-tokenizer: SmolLM2's own, else GPT-2's byte-level split."""
    name = str(getattr(tokenizer, "name_or_path", "")).lower()
    return "smollm" if "smollm" in name else "gpt-2"


def _write_tensors(writer, model, gguf_type: str) -> None:
    import gguf

    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = model.state_dict()
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            if "rotary_emb" in hf_name:
                continue  # recomputed from the rope settings
            raise LoraqaError(f"GGUF export: no llama.cpp tensor for {hf_name}; this model is not plain Llama")
        data = tensor.detach().to(torch.float32).numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_rotary(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_rotary(data, kv_heads)
        _add_tensor(writer, name, data, gguf_type)


def _add_tensor(writer, name: str, data: np.ndarray, gguf_type: str) -> None:
    import gguf

    if data.ndim == 1 or gguf_type == "f32":  # norms stay f32, as llama.cpp's converter keeps them
        writer.add_tensor(name, data.astype(np.float32))
    elif gguf_type == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    elif data.shape[-1] % 32:  # q8_0 blocks are 32 values along a row
        writer.add_tensor(name, data.astype(np.float16))
    else:
        quantized = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)


def _readme(ready, gguf_type: str) -> str:
    lines = [
        f"# {ready.spec.model_type} QA model, exported by loraqa as GGUF ({gguf_type})",
        "",
        f"Base `{ready.model_config.name}` with the adapter `{ready.adapter}` merged in.",
        "",
        "```",
        f"llama-cli -m {GGUF_FILE} --temp 0 -n 24 -p PROMPT       # llama.cpp",
        "ollama create my-qa -f Modelfile && ollama run my-qa       # Ollama (the Modelfile holds the template)",
        "```",
        "",
        "Prompts are built as loraqa built them in training; decode greedily and stop at the first newline:",
        "",
        *ready.spec.formulation.usage_notes(),
    ]
    return "\n".join(lines) + "\n"
