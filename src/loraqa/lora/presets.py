"""Named LoRA target presets, so users need not know each architecture's module names.

GPT-2 fuses q,k,v into `c_attn` (a Conv1D), DistilBERT calls them `q_lin`..., T5 `q`..., Llama
`q_proj`...: the presets below map one vocabulary onto all of them. Names match module-name
suffixes, as peft does.
"""

from __future__ import annotations

from loraqa.errors import ConfigError

_PRESETS: dict[str, dict[str, list[str]]] = {
    "t5": {
        "qv": ["q", "v"],
        "attention": ["q", "k", "v", "o"],
        "attention_mlp": ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"],
    },
    "gpt2": {
        "qv": ["c_attn"],  # q, k and v share one fused projection in GPT-2
        "attention": ["attn.c_attn", "attn.c_proj"],
        "attention_mlp": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
    },
    "llama": {
        "qv": ["q_proj", "v_proj"],
        "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "attention_mlp": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    },
    "bert": {
        "qv": ["query", "value"],
        "attention": ["query", "key", "value", "attention.output.dense"],
        "attention_mlp": ["query", "key", "value", "dense"],
    },
    "distilbert": {
        "qv": ["q_lin", "v_lin"],
        "attention": ["q_lin", "k_lin", "v_lin", "out_lin"],
        "attention_mlp": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    },
}
# Architectures that name their modules like one of the above.
_ALIASES = {
    "mt5": "t5", "umt5": "t5", "longt5": "t5",
    "mistral": "llama", "qwen2": "llama", "qwen3": "llama", "gemma": "llama", "gemma2": "llama", "phi3": "llama",
    "roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "camembert": "bert",
}  # fmt: skip

PRESET_NAMES = ("qv", "attention", "attention_mlp", "all_linear")


def resolve_target_modules(spec: str | list[str], model_type: str) -> str | list[str]:
    """Module names (or peft's 'all-linear') for a preset name, a comma list or an explicit list."""
    if isinstance(spec, list):
        return spec
    spec = spec.strip()
    if spec == "all_linear":
        return "all-linear"  # peft: every linear layer except the output head
    if spec in PRESET_NAMES:
        family = _ALIASES.get(model_type, model_type)
        if family not in _PRESETS:
            known = ", ".join(sorted(_PRESETS))
            raise ConfigError(
                "lora.target_modules",
                f"no preset '{spec}' for model type '{model_type}' (presets exist for {known}); list module names instead",
            )
        return list(_PRESETS[family][spec])
    return [name.strip() for name in spec.split(",") if name.strip()]
