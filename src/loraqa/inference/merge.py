"""`loraqa merge`: write base + adapter as one ordinary model (safetensors), loadable without peft."""

from __future__ import annotations

from pathlib import Path

from loraqa.errors import RunDirError
from loraqa.models.inference import ReadyModel
from loraqa.runs.atomic import atomic_directory


def write_merged(ready: ReadyModel, output: str, overwrite: bool) -> Path:
    target = Path(output)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise RunDirError(f"{target} is not empty; use --overwrite or another --output")
    with atomic_directory(target) as tmp:
        ready.model.save_pretrained(str(tmp), safe_serialization=True)
        ready.tokenizer.save_pretrained(str(tmp))
    return target
