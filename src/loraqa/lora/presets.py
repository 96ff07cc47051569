"""Named LoRA target presets, so users need not know each architecture's module names.

The module names per family live in `loraqa.families` (with the other family facts); this module
turns a `lora.target_modules` value (a preset name, a comma list or a list) into what peft takes.
"""

from __future__ import annotations

from loraqa import families
from loraqa.errors import ConfigError

PRESET_NAMES = families.LORA_PRESET_NAMES


def resolve_target_modules(spec: str | list[str], model_type: str) -> str | list[str]:
    """Module names (or peft's 'all-linear') for a preset name, a comma list or an explicit list."""
    if isinstance(spec, list):
        return spec
    spec = spec.strip()
    if spec == "all_linear":
        return "all-linear"  # peft: every linear layer except the output head
    if spec in PRESET_NAMES:
        names = families.lora_preset(spec, model_type)
        if names is None:
            known = ", ".join(sorted(families.LORA_PRESETS))
            raise ConfigError(
                "lora.target_modules",
                f"no preset '{spec}' for model type '{model_type}' (presets exist for {known}); list module names instead",
            )
        return names
    return [name.strip() for name in spec.split(",") if name.strip()]
