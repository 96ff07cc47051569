"""Saving an adapter: the same bytes whichever process saved it, and nothing asked of the network."""

from __future__ import annotations

import json

from peft import LoraConfig, get_peft_model
from run_helpers import block_network, tiny_overrides
from safetensors import safe_open
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

import loraqa.lora.adapter
from loraqa.cli import main
from loraqa.lora.adapter import save_adapter


def test_saving_an_adapter_whose_base_is_a_hub_id_contacts_no_one(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    """An adapter records its base's hub id (an offline model's, or the one the user trained on); peft's
    "auto" embedding check would ask the hub for that base's config.json while saving it."""
    monkeypatch.setattr(loraqa.lora.adapter, "describe_base", lambda name: {"name": "someone/tiny-bert", "kind": "hub"})
    calls = block_network(monkeypatch)
    out = tmp_path / "run"
    assert main(["train", *tiny_overrides(tiny_model_dir("bert"), qa_files, out)]) == 0
    assert calls == []
    with safe_open(str(out / "adapter" / "adapter_model.safetensors"), framework="pt") as handle:
        assert not [key for key in handle.keys() if "word_embeddings" in key]  # the vocabulary did not grow


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


def test_a_saved_tokenizer_does_not_remember_its_last_call(tiny_model_dir, tmp_path):
    """A fast tokenizer keeps its last call's truncation in its backend; the adapter's copy must not."""
    from loraqa.lora.adapter import save_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir("bert"))
    save_tokenizer(tokenizer, tmp_path / "fresh")
    tokenizer("a question", "a context " * 50, truncation="only_second", max_length=16)
    save_tokenizer(tokenizer, tmp_path / "after-a-call")
    assert (tmp_path / "fresh" / "tokenizer.json").read_bytes() == (
        tmp_path / "after-a-call" / "tokenizer.json"
    ).read_bytes()
