"""What loraqa knows about model families, in one place: keyed by `config.model_type`.

Every fact here is about an architecture, not a formulation: which precision breaks it, what its
linear layers are called, how its weights are stored, how its positions are counted. Modules that
need one read it from here (device planning, config checks, choosing a formulation, LoRA presets,
training's NaN hint), so supporting a new family means editing this file, not hunting for spellings.
Plain data and small lookups only; it sits at the bottom of the layers and imports nothing of loraqa.
"""

from __future__ import annotations

# --- precision -----------------------------------------------------------------------------------
# fp16 overflows in T5's feed-forward activations and turns its loss into NaN (a known T5 trait,
# hence FLAN-T5 ships bf16 weights); bf16 and fp32 are fine.
FP16_UNSAFE = frozenset({"t5", "mt5", "umt5", "longt5"})

# --- architecture shape ----------------------------------------------------------------------------
# Encoders without a generative head: they can only point at a span (the extractive formulation).
ENCODER_ONLY = frozenset(
    {
        "bert",
        "distilbert",
        "roberta",
        "albert",
        "electra",
        "deberta",
        "deberta-v2",
        "xlm-roberta",
        "mpnet",
        "camembert",
        "modernbert",
        "megatron-bert",
    }
)
# GPT-2 stores its projections as Conv1D, weights transposed against nn.Linear: peft needs
# `fan_in_fan_out`, and peft 0.21's OLoRA QR breaks on them.
CONV1D_WEIGHTS = frozenset({"gpt2"})
# RoBERTa-style position ids start after the padding index: two learned positions are never usable.
OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert"})

# --- LoRA target presets ---------------------------------------------------------------------------
# GPT-2 fuses q,k,v into `c_attn`, DistilBERT calls them `q_lin`..., T5 `q`..., Llama `q_proj`...:
# one preset vocabulary mapped onto each. Names match module-name suffixes, as peft does.
LORA_PRESET_NAMES = ("qv", "attention", "attention_mlp", "all_linear")  # all_linear: peft's 'all-linear'
LORA_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "t5": {
        "qv": ("q", "v"),
        "attention": ("q", "k", "v", "o"),
        # One preset lists every member's spelling (T5: wi; FLAN-T5: wi_0/wi_1); only some exist in one model.
        "attention_mlp": ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"),
    },
    "gpt2": {
        "qv": ("c_attn",),  # q, k and v share one fused projection in GPT-2
        "attention": ("attn.c_attn", "attn.c_proj"),
        "attention_mlp": ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    },
    "llama": {
        "qv": ("q_proj", "v_proj"),
        "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
        "attention_mlp": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    },
    "bert": {
        "qv": ("query", "value"),
        "attention": ("query", "key", "value", "attention.output.dense"),
        "attention_mlp": ("query", "key", "value", "dense"),
    },
    "distilbert": {
        "qv": ("q_lin", "v_lin"),
        "attention": ("q_lin", "k_lin", "v_lin", "out_lin"),
        "attention_mlp": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    },
}
# Architectures that name their modules like one of the above.
MODULE_NAMES_LIKE = {
    "mt5": "t5",
    "umt5": "t5",
    "longt5": "t5",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma": "llama",
    "gemma2": "llama",
    "phi3": "llama",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
    "camembert": "bert",
}


def fp16_unsafe(model_type: str) -> bool:
    """Whether fp16 mixed precision makes this family's loss NaN."""
    return model_type in FP16_UNSAFE


def is_encoder_only(model_type: str) -> bool:
    """Whether the family has no generative head (only the extractive formulation fits it)."""
    return model_type in ENCODER_ONLY


def has_conv1d_weights(model_type: str) -> bool:
    """Whether the family's projections are transposed Conv1D weights (peft's `fan_in_fan_out`)."""
    return model_type in CONV1D_WEIGHTS


def unusable_positions(model_type: str) -> int:
    """How many of `max_position_embeddings` the family can never use (RoBERTa's padding offset)."""
    return 2 if model_type in OFFSET_POSITIONS else 0


def lora_preset(preset: str, model_type: str) -> list[str] | None:
    """Module names of a LoRA preset for this family; None when loraqa has no presets for it."""
    family = MODULE_NAMES_LIKE.get(model_type, model_type)
    return list(LORA_PRESETS[family][preset]) if family in LORA_PRESETS else None


# Checkpoints whose own training mixture holds SQuAD: their "no adapter" baseline has seen these
# questions' kind (and the train split itself), so it is not zero-shot. The original T5 checkpoints
# were pre-trained multi-task with SQuAD among the supervised tasks (Raffel et al. 2020, Sec. 3.7);
# FLAN-T5's Flan 2022 collection includes SQuAD v1/v2 (Chung et al. 2022, Appendix F).
TRAINED_ON_SQUAD = ("google/flan-t5-", "google-t5/t5-", "t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b")


def trained_on_squad(model_name: str) -> bool:
    """Whether the named hub checkpoint saw SQuAD in its own training (its baseline is not zero-shot)."""
    name = model_name.strip().lower()
    return any(name == prefix or name.startswith(prefix) for prefix in TRAINED_ON_SQUAD)
