"""An adapter is the same bytes whichever process saved it (a resumed run's final save included)."""

from __future__ import annotations

import json

from peft import LoraConfig, get_peft_model
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from loraqa.lora.adapter import save_adapter


class _HashOrderedSet(set):
    """A set iterating in an order sorting would not give, as string hashing may in another process."""

    def __iter__(self):
        return iter(sorted(set.__iter__(self), reverse=True))


def test_adapter_config_lists_target_modules_sorted_whatever_the_set_order(tiny_model_dir, tmp_path):
    """peft keeps target_modules as a set and wrote it in iteration order, which PYTHONHASHSEED changes
    between processes: a run killed after its adapter was saved, then resumed, kept that process's
    order, so its adapter_config.json differed from the uninterrupted run's."""
    base = tiny_model_dir("bert")
    peft_model = get_peft_model(
        AutoModelForQuestionAnswering.from_pretrained(base),
        LoraConfig(r=2, target_modules=["query", "value", "key", "dense"]),
    )
    config = peft_model.peft_config["default"]
    config.target_modules = _HashOrderedSet(config.target_modules)
    save_adapter(peft_model, AutoTokenizer.from_pretrained(base), tmp_path / "adapter", {})
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["target_modules"] == ["dense", "key", "query", "value"]
    assert isinstance(config.target_modules, _HashOrderedSet)  # the live model's config is left as it was
