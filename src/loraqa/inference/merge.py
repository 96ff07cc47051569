"""`loraqa merge`: write base + adapter as one ordinary model (safetensors), loadable without peft."""

from __future__ import annotations

from pathlib import Path

from loraqa.errors import RunDirError
from loraqa.models.inference import ReadyModel
from loraqa.runs.atomic import atomic_directory


def write_merged(ready: ReadyModel, output: str, overwrite: bool) -> Path:
    """Write the merged model to `output`, a new or empty directory (a non-empty one only with
    `overwrite`); it appears whole or not at all. A file there is never replaced."""
    target = Path(output)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise RunDirError(f"{target} exists and is not a directory; give --output a new or empty directory")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise RunDirError(f"{target} is not empty; use --overwrite or another --output")
    with atomic_directory(target) as tmp:
        ready.model.save_pretrained(str(tmp), safe_serialization=True)
        ready.tokenizer.save_pretrained(str(tmp))
    return target
