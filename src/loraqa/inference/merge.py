"""`loraqa merge`: write base + adapter as one ordinary model (safetensors), loadable without peft.

An adapter trained on a quantized base (QLoRA, loraqa.json `quantize_base`) is merged into the
FULL-precision base, as peft's docs advise: merging into 4/8-bit weights would round the update
away and write a quantized model. loraqa's inference loading never quantizes the base
(`inference.ready.load_ready_model` calls `load_model` without `quantize`), so that is what happens;
`quantized_base_notice` says so to the user.
"""

from __future__ import annotations

from pathlib import Path

from loraqa.atomic import atomic_directory
from loraqa.errors import RunDirError
from loraqa.inference.ready import ReadyModel


def quantized_base_notice(meta: dict) -> str | None:
    """The line to print when the adapter was trained on a quantized base; None otherwise."""
    quantized = meta.get("quantize_base", "none")
    if quantized == "none":
        return None
    return (
        f"the adapter was trained on a {quantized} base (QLoRA); merging into the full-precision base, as peft "
        "advises: answers can differ slightly from the quantized model it trained on"
    )


def check_output_directory(output: str | Path, overwrite: bool) -> Path:
    """`output` as a Path when it may be written: new, empty, or non-empty with `overwrite` (RunDirError otherwise)."""
    target = Path(output)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise RunDirError(f"{target} exists and is not a directory; give --output a new or empty directory")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise RunDirError(f"{target} is not empty; use --overwrite or another --output")
    return target


def write_merged(ready: ReadyModel, output: str, overwrite: bool) -> Path:
    """Write the merged model to `output`, a new or empty directory (a non-empty one only with
    `overwrite`); it appears whole or not at all. A file there is never replaced."""
    target = check_output_directory(output, overwrite)
    with atomic_directory(target) as tmp:
        ready.model.save_pretrained(str(tmp), safe_serialization=True)
        ready.tokenizer.save_pretrained(str(tmp))
    return target
