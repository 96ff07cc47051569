"""The grouped mixed-batch LoRA forward gives peft's own mixed-batch outputs: adapters of different ranks
and target modules, the base's rows, and adapters loaded or replaced after the first call."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from loraqa.lora import grouped_lora

ADAPTERS = {
    "a": LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn", "c_proj"], init_lora_weights=False),
    "b": LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False),
    "c": LoraConfig(r=8, lora_alpha=8, target_modules=["c_attn", "c_fc"], init_lora_weights=False),
}


def _peft_model(tiny_model_dir, names):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir("gpt2")))
    model = get_peft_model(base, ADAPTERS[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, ADAPTERS[name])
    return model.eval()


def _logits(model, ids, names):
    with torch.no_grad():
        return model(input_ids=ids, adapter_names=names).logits


def _peft_logits(model, ids, names):
    """The logits by peft's own mixed-batch forward: the installed instance overrides set aside."""
    installed = {m: vars(m).pop("_mixed_batch_forward") for m in model.modules() if "_mixed_batch_forward" in vars(m)}
    try:
        return _logits(model, ids, names)
    finally:
        for module, forward in installed.items():
            module._mixed_batch_forward = forward


def _peft_then_grouped(model, ids, names):
    expected = _peft_logits(model, ids, names)
    grouped_lora.install(model)
    assert any("_mixed_batch_forward" in vars(m) for m in model.modules())
    return expected, _logits(model, ids, names)


@pytest.mark.parametrize("tokens", [1, grouped_lora.FEW_TOKENS, 12])  # grouped up to FEW_TOKENS, peft's loop after
@pytest.mark.parametrize(
    "names", [["a", "b", "__base__", "c", "a"], ["a", "a", "b", "__base__", "c"], ["c", "c"], ["__base__", "b"]]
)
def test_grouped_rows_equal_peft_mixed_rows(tiny_model_dir, names, tokens):
    model = _peft_model(tiny_model_dir, ["a", "b", "c"])
    ids = torch.randint(5, 300, (len(names), tokens))
    expected, grouped = _peft_then_grouped(model, ids, names)
    assert torch.allclose(grouped, expected, atol=1e-5)
    # and they really differ per adapter (the check above is not comparing base outputs)
    assert not torch.allclose(_logits(model, ids[:1], ["a"]), _logits(model, ids[:1], ["__base__"]), atol=1e-3)


def test_an_adapter_added_or_replaced_after_a_grouped_call_is_used(tiny_model_dir):
    model = _peft_model(tiny_model_dir, ["a", "b"])
    ids = torch.randint(5, 300, (3, 2))
    grouped_lora.install(model)
    _logits(model, ids, ["a", "b", "a"])  # builds the stacks of a and b
    model.add_adapter("c", ADAPTERS["c"])  # c_fc gains LoRA layers that were never installed
    grouped_lora.install(model)
    grouped = _logits(model, ids, ["c", "b", "a"])
    assert torch.allclose(grouped, _peft_logits(model, ids, ["c", "b", "a"]), atol=1e-5)
    model.delete_adapter("b")
    model.add_adapter("b", ADAPTERS["c"])  # same name, new weights: the stacks must not be stale
    grouped_lora.install(model)
    renewed = _logits(model, ids, ["c", "b", "a"])
    assert torch.allclose(renewed, _peft_logits(model, ids, ["c", "b", "a"]), atol=1e-5)
    assert not torch.allclose(renewed[1], grouped[1], atol=1e-3), "b's new weights answer"
