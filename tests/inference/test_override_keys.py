"""The model.* keys of a list of `key=value` overrides: what an adapter's own settings are checked against."""

from __future__ import annotations

from loraqa.inference.ready import model_override_keys


def test_only_the_model_sections_keys_that_are_set():
    overrides = ["model.max_seq_length=512", " model.name = x", "training.device=cpu", "model.doc_stride", "lora.r=8"]
    assert model_override_keys(overrides) == {"max_seq_length", "name"}
    assert model_override_keys([]) == frozenset()
