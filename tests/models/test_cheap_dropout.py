"""Dropout on CPU (LoRA's, the base model's, attention's) draws its masks from 16-bit random
integers; it must still be dropout, and attention must still be attention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loraqa.config.schema import LoraSettings, ModelConfig
from loraqa.lora.adapter import attach_lora
from loraqa.models import cheap_dropout
from loraqa.models.cheap_dropout import CPU_DROPOUT_ATTENTION, CheapMaskDropout, cpu_dropout_attention
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
        settings = LoraSettings(
            r=4, lora_alpha=8, lora_dropout=p, target_modules="attention", allow_large_trainable_share=True
        )  # a tiny model: LoRA is a large share
        peft_model = attach_lora(model, settings, spec.formulation, spec.model_type)
        dropouts = [
            d
            for m in peft_model.modules()
            if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
            for d in m.lora_dropout.values()
        ]
        assert dropouts and all(type(d) is expected for d in dropouts)


def tiny_bert(tiny_model_dir):
    model_config = ModelConfig(name=str(tiny_model_dir("bert")))
    spec = inspect_base(model_config)
    tokenizer = load_tokenizer(spec, model_config)
    return spec, load_model(spec, model_config, tokenizer, torch.device("cpu"))


def test_attach_lora_swaps_the_base_models_dropouts_and_attention_too(tiny_model_dir):
    spec, model = tiny_bert(tiny_model_dir)
    assert model.config.hidden_dropout_prob > 0 and model.config.attention_probs_dropout_prob > 0
    settings = LoraSettings(r=4, lora_dropout=0.0, target_modules="attention", allow_large_trainable_share=True)
    peft_model = attach_lora(model, settings, spec.formulation, spec.model_type)
    assert not [m for m in peft_model.modules() if type(m) is nn.Dropout and m.p > 0]
    assert any(type(m) is CheapMaskDropout for m in peft_model.modules())
    assert peft_model.get_base_model().config._attn_implementation == CPU_DROPOUT_ATTENTION


def attention_inputs(mask_dtype):
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 4, 6, 8, requires_grad=True) for _ in range(3))
    keep = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    keep[0, :, :, 4:] = False  # the first row's last two tokens are padding
    mask = (
        keep if mask_dtype == torch.bool else torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
    )
    return query, key, value, mask


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32, None])
@pytest.mark.parametrize("bias", [False, True])
def test_attention_without_its_mask_is_sdpa(mask_dtype, bias, monkeypatch):
    # With the dropout itself made the identity, the math path must give SDPA's output and gradients,
    # with padding masks of either kind, none, and T5's relative position bias.
    module = nn.Module().train()
    module.is_causal = False
    query, key, value, mask = attention_inputs(mask_dtype or torch.bool)
    mask = mask if mask_dtype is not None else None
    extra = {"position_bias": torch.randn(1, 4, 6, 6)} if bias else {}
    monkeypatch.setattr(cheap_dropout, "cheap_dropout", lambda x, levels: x)
    ours, _ = cpu_dropout_attention(module, query, key, value, mask, dropout=0.1, scaling=1.0, **extra)
    ours.sum().backward()
    grads = [t.grad.clone() for t in (query, key, value)]
    for t in (query, key, value):
        t.grad = None
    reference, _ = cheap_dropout.sdpa_attention_forward(
        module.eval(), query, key, value, mask, dropout=0.0, scaling=1.0, **extra
    )
    reference.sum().backward()
    torch.testing.assert_close(ours, reference)
    for got, t in zip(grads, (query, key, value), strict=True):
        torch.testing.assert_close(got, t.grad)


def test_attention_drops_probabilities_at_rate_p():
    module = nn.Module().train()
    module.is_causal = False
    torch.manual_seed(0)
    length = 64
    query = torch.zeros(8, 16, length, length)  # equal scores: every probability is 1 / length
    value = torch.eye(length).expand(8, 16, length, length)  # so the output is the dropped probabilities
    out, _ = cpu_dropout_attention(module, query, query, value, None, dropout=0.25)
    dropped = float((out == 0).float().mean())
    assert abs(dropped - 0.25) < 0.01
    assert abs(float(out.sum(dim=-1).mean()) - 1.0) < 0.01  # kept ones scaled: rows still sum to 1 on average
