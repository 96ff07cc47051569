"""Saving an adapter asks nothing of the network, whatever base it records."""

from __future__ import annotations

from safetensors import safe_open

import loraqa.lora.adapter
from loraqa.cli import main
from run_helpers import block_network, tiny_overrides


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
