"""Dropout with cheap masks on CPU: LoRA's, the base model's, and attention's.

On a CPU, torch draws a dropout mask with `bernoulli_`, one random number per element from a
sequential generator. Measured with torch.profiler (`docs/performance.md`): for SmolLM2 with LoRA on
attention at batch 8, peft's 120 LoRA masks of ~1M elements took ~0.8 s of a 7.3 s step; for MiniLM
(hidden and attention dropout 0.1) at batch 16, `bernoulli_` was 19% of a step, four fifths of it
on the attention probabilities (batch x heads x length x length), which also keeps SDPA off its
fused kernel.

`CheapMaskDropout` draws 16 random bits per element instead (four per 64-bit draw) and keeps an
element when its bits fall outside the lowest `round(p * 65536)` values: 1.75 ms instead of 6.2 ms
per mask at that size. The math is dropout's: each element is zeroed independently with probability
`p' = round(p * 65536) / 65536` (within 1/131072 of `p`: 0.0500031 for 0.05) and the kept ones are
scaled by `1 / (1 - p')`, so the expected output is the input. Masks come from torch's seeded
generator, so runs stay reproducible; they are not the same masks `nn.Dropout` would draw.

Attention dropout sits inside `scaled_dot_product_attention`, so `CPU_DROPOUT_ATTENTION` is an
attention implementation (registered with transformers' AttentionInterface): while training with
dropout on a CPU it computes attention as SDPA's own math path does (scores, softmax, dropout,
values), with a cheap mask; otherwise it is transformers' `sdpa_attention_forward`.

Only used on CPU: CUDA's fused dropout kernels are already cheap.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import create_position_bias_mask, repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

_LEVELS = 1 << 16
CPU_DROPOUT_ATTENTION = "loraqa_cpu_dropout_sdpa"


class CheapMaskDropout(nn.Dropout):
    def __init__(self, p: float) -> None:
        super().__init__(p)
        self.dropped_levels = round(p * _LEVELS)
        self.realized_p = self.dropped_levels / _LEVELS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped_levels == 0:
            return x
        return cheap_dropout(x, self.dropped_levels)


def cheap_dropout(x: torch.Tensor, dropped_levels: int) -> torch.Tensor:
    """Zero each element with probability dropped_levels / 65536; scale the rest to keep the mean."""
    n = x.numel()
    # Full-range 64-bit draws viewed as four independent, uniform int16 values each.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(1 << 63), None)
    bits = bits.view(torch.int16)[:n].view(x.shape)
    keep = bits >= dropped_levels - (_LEVELS // 2)
    return _MaskedScale.apply(x, keep, _LEVELS / (_LEVELS - dropped_levels))


class _MaskedScale(torch.autograd.Function):
    """x * keep * scale, forward and backward in one kernel each (aten's dropout-backward kernel),
    saving only the boolean mask (1 byte per element) for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.ops.aten.native_dropout_backward(x, keep, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.ops.aten.native_dropout_backward(grad, keep, ctx.scale), None, None


def cpu_dropout_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """SDPA, except in training with dropout on a CPU: then SDPA's math path with a cheap mask.

    It prepares masks as `sdpa_attention_forward` does (a causal flag only when there is no mask,
    T5's relative `position_bias` folded into an additive mask) and leaves to it whatever this path
    does not handle (softcapping, attention sinks, paged caches, a causal flag over a longer cache).
    """
    dropped_levels = round(dropout * _LEVELS)
    is_causal = kwargs.get("is_causal")
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = bool(query.shape[2] > 1 and attention_mask is None and is_causal)
    position_bias = kwargs.get("position_bias")
    unhandled = any(kwargs.get(name) is not None for name in ("softcap", "s_aux", "sinks", "cache"))
    if (
        not module.training
        or dropped_levels == 0
        or query.device.type != "cpu"
        or unhandled
        or (is_causal and (position_bias is None or key.shape[2] != query.shape[2]))
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if position_bias is not None:
        attention_mask = create_position_bias_mask(position_bias, attention_mask, is_causal, query, key)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if attention_mask is None:
        pass  # bidirectional, nothing padded
    elif attention_mask.dtype == torch.bool:  # True = attend; a large negative, not -inf, so no row is NaN
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    else:
        scores = scores + attention_mask
    probs = cheap_dropout(torch.softmax(scores, dim=-1), dropped_levels)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(CPU_DROPOUT_ATTENTION, cpu_dropout_attention)
AttentionMaskInterface.register(CPU_DROPOUT_ATTENTION, sdpa_mask)  # the masks SDPA gets


def use_cheap_masks(model) -> int:
    """Swap every `nn.Dropout` with p > 0 in `model` (LoRA's and the base model's) for
    `CheapMaskDropout`, and SDPA attention with dropout for `cpu_dropout_attention`; return how
    many dropout modules were swapped."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout and child.p > 0:
                setattr(module, name, CheapMaskDropout(child.p))
                swapped += 1
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "_attn_implementation", None) == "sdpa" and _attention_dropout(config) > 0:
        try:
            base.set_attn_implementation(CPU_DROPOUT_ATTENTION)
        except (ValueError, ImportError):
            pass  # a model that cannot switch keeps SDPA and torch's masks
    return swapped


def _attention_dropout(config) -> float:
    for name in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop", "dropout_rate"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0
