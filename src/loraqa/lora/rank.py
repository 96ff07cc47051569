"""The largest LoRA rank a base can use, read from its architecture before any weight exists.

LoRA adds B @ A to a layer's weight (out x in); that product has rank at most min(in, out), so a
rank above it buys nothing but memory. `lora.r=100000` on MiniLM allocated past 5 GB before the
trainable-share check refused it; here it is one line, from shapes alone: the architecture is
built on PyTorch's meta device (no memory, no weights read) and the layers LoRA would adapt are
matched as peft matches them.
"""

from __future__ import annotations

import torch

from loraqa.config.schema import LoraSettings
from loraqa.errors import ConfigError
from loraqa.lora.presets import resolve_target_modules


def check_rank(settings: LoraSettings, hf_config, model_type: str) -> None:
    """Refuse `lora.r` above min(in, out) of every layer it would adapt, naming the largest usable
    rank. Architectures transformers cannot build without remote code are left to peft."""
    usable = usable_ranks(hf_config, resolve_target_modules(settings.target_modules, model_type))
    if not usable or settings.r <= max(usable.values()):
        return
    best = max(usable.values())
    names = ", ".join(name for name, rank in usable.items() if rank == best)
    raise ConfigError(
        "lora.r",
        f"{settings.r} is more than any adapted layer can use: the largest is {best} (min(in, out) of {names}); "
        f"a rank above it only costs memory, use at most {best}",
    )


def usable_ranks(hf_config, targets: str | list[str]) -> dict[str, int]:
    """Leaf name -> the largest min(in, out) among the layers `targets` selects (peft's rule: the
    full name or a dotted suffix; "all-linear": every linear layer). {} when the architecture
    cannot be built from its config alone."""
    from transformers import AutoModel
    from transformers.pytorch_utils import Conv1D

    try:
        with torch.device("meta"):
            model = AutoModel.from_config(hf_config, trust_remote_code=False)
    except Exception:  # a remote-code or unknown architecture: nothing to read the shapes from
        return {}
    ranks: dict[str, int] = {}
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Linear, Conv1D)) or not _selected(name, targets):
            continue
        leaf = name.rsplit(".", 1)[-1]
        ranks[leaf] = max(ranks.get(leaf, 0), min(module.weight.shape))
    return ranks


def _selected(name: str, targets: str | list[str]) -> bool:
    if isinstance(targets, str):  # "all-linear"
        return True
    return any(name == target or name.endswith(f".{target}") for target in targets)
