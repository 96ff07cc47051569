"""LoRA dropout on CPU draws its masks from 16-bit random integers; it must still be dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loraqa.config.schema import LoraSettings, ModelConfig
from loraqa.lora.adapter import attach_lora
from loraqa.lora.dropout import CheapMaskDropout
from loraqa.models.loading import inspect_base, load_model, load_tokenizer


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drops_each_element_with_probability_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    dropout = CheapMaskDropout(p)
    assert abs(dropout.realized_p - p) <= 1 / 131072
    out = dropout(torch.ones(2000, 1000))
    dropped = float((out == 0).float().mean())
    assert abs(dropped - p) < 5 * (p * (1 - p) / 2e6) ** 0.5  # five standard errors
    assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - dropout.realized_p)))
    assert abs(float(out.mean()) - 1.0) < 0.01


def test_masks_differ_between_calls_and_repeat_under_a_seed():
    dropout = CheapMaskDropout(0.3)
    x = torch.ones(64, 64)
    torch.manual_seed(1)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(1)
    assert not torch.equal(first, second)
    assert torch.equal(dropout(x), first)


def test_gradient_flows_through_the_kept_elements_only():
    x = torch.randn(8, 16, 32, requires_grad=True)
    dropout = CheapMaskDropout(0.2)
    out = dropout(x)
    out.backward(torch.ones_like(out))
    kept = out != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], torch.tensor(1 / (1 - dropout.realized_p)))


def test_identity_in_eval_mode():
    dropout = CheapMaskDropout(0.5).eval()
    x = torch.randn(4, 4)
    assert dropout(x) is x


def test_attach_lora_swaps_dropout_only_where_p_is_positive(tiny_model_dir):
    model_config = ModelConfig(name=str(tiny_model_dir("llama")))
    spec = inspect_base(model_config)
    tokenizer = load_tokenizer(spec, model_config)
    for p, expected in [(0.1, CheapMaskDropout), (0.0, nn.Identity)]:
        model = load_model(spec, model_config, tokenizer, torch.device("cpu"))
        settings = LoraSettings(r=4, lora_alpha=8, lora_dropout=p, target_modules="attention",
                                allow_large_trainable_share=True)  # a tiny model: LoRA is a large share
        peft_model = attach_lora(model, settings, spec.formulation, spec.model_type)
        dropouts = [d for m in peft_model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
                    for d in m.lora_dropout.values()]  # fmt: skip
        assert dropouts and all(type(d) is expected for d in dropouts)
