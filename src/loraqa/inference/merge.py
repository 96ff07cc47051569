"""`loraqa merge`: write base + adapter as one ordinary model (safetensors), loadable without peft.

An adapter trained on a quantized base (QLoRA, loraqa.json `quantize_base`) is merged into the
FULL-precision base, as peft's docs advise: merging into 4/8-bit weights would round the update
away and write a quantized model. loraqa's inference loading never quantizes the base
(`inference.ready.load_ready_model` calls `load_model` without `quantize`), so that is what happens;
`quantized_base_notice` says so to the user.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shlex
from pathlib import Path

from loraqa.atomic import atomic_directory
from loraqa.config.schema import ModelConfig
from loraqa.errors import RunDirError
from loraqa.inference.ready import ReadyModel
from loraqa.version import __version__

README_FILE = "README.md"


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
        (tmp / README_FILE).write_text(merged_readme(ready), encoding="utf-8")
    return target


def merged_readme(ready: ReadyModel, when: datetime.datetime | None = None) -> str:
    """The README.md of a merged model: what it is, how it was made, and how to load it."""
    formulation = ready.spec.formulation
    auto = formulation.auto_model_class().__name__
    made = (when or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {ready.model_config.name} + LoRA adapter, merged ({formulation.name} question answering)",
        "",
        f"An ordinary transformers model (safetensors), made by `loraqa merge` (loraqa {__version__}) on {made}:",
        "",
        f"- base: `{ready.model_config.name}`",
        f"- adapter: `{ready.adapter}` (merged in full precision; peft is not needed to load it)",
        f"- formulation: {formulation.name}",
        "",
        "## Use it with loraqa",
        "",
        "```",
        f"loraqa predict --model DIR {_model_settings(ready)} --question 'Who?' --context '...'",
        "```",
        "",
        "## Use it with plain transformers",
        "",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        f'model = {auto}.from_pretrained("DIR").eval()',
        'tokenizer = AutoTokenizer.from_pretrained("DIR")',
        "```",
        "",
        *formulation.usage_notes(),
    ]
    if ready.model_config.closed_book:
        lines += ["", "Closed book: the prompt holds the question only (no context)."]
    return "\n".join(lines) + "\n"


def _model_settings(ready: ReadyModel) -> str:
    """`model.key=value` for the settings the adapter answered with that differ from the defaults (the
    prompt template, lengths...), formulation always: `predict --model DIR` then answers the same way."""
    config, default = ready.model_config, ModelConfig()
    items = [f"model.formulation={ready.spec.formulation.name}"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name not in ("name", "formulation") and value != getattr(default, f.name):
            items.append(f"model.{f.name}={json.dumps(value)}")  # JSON is YAML: a template's newlines stay escapes
    return " ".join(shlex.quote(item) for item in items)
