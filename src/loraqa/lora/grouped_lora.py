"""Mixed-adapter generation without peft's per-adapter loop: every adapter's LoRA in two matmuls, masked per row.

peft's mixed-batch forward (`adapter_names`) runs, in every LoRA layer and for every adapter in the
batch, a list comprehension, a gather of that adapter's rows, two small matmuls and a scatter back.
Generating one token for a batch on SmolLM2-135M (210 LoRA layers) with 4 adapters is then some
5,000 small operations, which on a CPU cost more than the token's own arithmetic. For such few-token
inputs each layer here keeps its adapters' A matrices stacked and B matrices side by side (rebuilt
only when its adapters change), computes every adapter's low-rank activations for every row in one
matmul, zeroes the blocks that are not the row's adapter (and scales the rest), and projects back in
one more: a fixed handful of operations whatever the number of adapters. Longer inputs (prompts,
extractive windows), where that would multiply the low-rank arithmetic by the number of adapters, run
each adapter on its rows as slices, which are views: peft's loop gathers each adapter's rows and
scatters its output back, copies that cost extractive MiniLM more than the LoRA arithmetic itself
(py-spy on `loraqa serve`, 2026-12-07). That needs each adapter's rows side by side: the formulations
order a mixed batch's rows by adapter (`rows_by_adapter`); rows in any other order take peft's loop.

`install(model)` gives each plain-LoRA `Linear` of `model` this forward for mixed batches only (the
instance's `_mixed_batch_forward`, which peft calls when `adapter_names` is passed). Layers in training
mode and adapters with a LoRA variant (DoRA and the like) or a LoRA bias keep peft's own forward.
"""

from __future__ import annotations

import types

import torch

_STACKS = "_loraqa_lora_stacks"  # per layer: (key, slots, A stacked, B side by side, scales, column slots)
# Up to this many tokens per row (a generated token, a short prompt) a layer computes every adapter's
# low-rank product for every row in two matmuls and masks; longer inputs (prompts, extractive windows)
# take peft's loop, whose per-adapter overhead their arithmetic hides and which computes no extra.
FEW_TOKENS = 4


def install(model: torch.nn.Module) -> None:
    """Route `model`'s LoRA Linear layers' mixed batches through `_grouped_forward` (idempotent; cheap to
    repeat, so callers run it before each mixed call and layers added by a newly loaded adapter join)."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if isinstance(module, Linear) and "_mixed_batch_forward" not in vars(module):
            module._mixed_batch_forward = types.MethodType(_grouped_forward, module)


def _grouped_forward(self, x: torch.Tensor, *args, adapter_names: list[str], **kwargs) -> torch.Tensor:
    from peft.tuners.lora.layer import VARIANT_KWARG_KEYS

    present = set(adapter_names)
    runs = _runs(adapter_names)
    few_tokens = (x.shape[-2] if x.dim() == 3 else 1) <= FEW_TOKENS
    if (
        (not few_tokens and len(runs) > len(present))
        or self.training
        or any(name in self.lora_variant or self.lora_bias.get(name) for name in present)
    ):
        return type(self)._mixed_batch_forward(self, x, *args, adapter_names=adapter_names, **kwargs)
    for key in VARIANT_KWARG_KEYS:  # variants only: never passed to the base layer (as peft does)
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    if not few_tokens:  # each adapter's rows are one run: slices are views, nothing is gathered or scattered
        for name, start, end in runs:
            if name in self.lora_A:  # not the base's rows, nor an adapter without LoRA on this layer
                low_rank = self.lora_B[name](self.lora_A[name](x[start:end].to(self.lora_A[name].weight.dtype)))
                result[start:end] += (low_rank * self.scaling[name]).to(result.dtype)
        return result
    slots, a_cat, b_cat, scales, blocks = _stacks(self)
    # Each row keeps only its adapter's block of the low-rank activations, scaled; the base's rows and
    # adapters with no LoRA on this layer keep none (peft skips both).
    slot = torch.tensor([slots.get(name, -1) for name in adapter_names], device=a_cat.device)
    mask = (blocks.unsqueeze(0) == slot.unsqueeze(1)) * scales[slot.clamp(min=0)].unsqueeze(1)
    low = torch.nn.functional.linear(x.to(a_cat.dtype), a_cat)
    low = low * (mask.unsqueeze(1) if low.dim() == 3 else mask)
    return result + torch.nn.functional.linear(low, b_cat).to(result.dtype)


def _runs(names: list[str]) -> list[tuple[str, int, int]]:
    """(name, start, end) of each run of equal consecutive names."""
    runs: list[tuple[str, int, int]] = []
    for row, name in enumerate(names):
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1], row + 1)
        else:
            runs.append((name, row, row + 1))
    return runs


def _stacks(layer) -> tuple[dict[str, int], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """This layer's adapters' A stacked (n*r, in) and B side by side (out, n*r), each padded to the
    largest rank, their scales and each low-rank column's adapter slot; cached on the layer and rebuilt
    when its adapters change (a loaded or unloaded adapter changes the names; the registry never reuses
    a name, and the weights' identity is in the key as well)."""
    names = [name for name in layer.lora_A if name not in layer.lora_variant]
    key = tuple((name, id(layer.lora_A[name].weight), id(layer.lora_B[name].weight)) for name in names)
    cached = layer.__dict__.get(_STACKS)
    if cached is not None and cached[0] == key:
        return cached[1:]
    weights = [(layer.lora_A[n].weight, layer.lora_B[n].weight) for n in names]
    rank = max((a.shape[0] for a, _ in weights), default=1)
    like = weights[0][0] if weights else layer.base_layer.weight
    options = {"dtype": like.dtype, "device": like.device}
    a_cat = torch.zeros(len(names) * rank, layer.in_features, **options)
    b_cat = torch.zeros(layer.out_features, len(names) * rank, **options)
    with torch.no_grad():
        for slot, (a, b) in enumerate(weights):
            a_cat[slot * rank : slot * rank + a.shape[0]] = a
            b_cat[:, slot * rank : slot * rank + b.shape[1]] = b
    scales = torch.tensor([float(layer.scaling[n]) for n in names] or [0.0], **options)
    blocks = torch.arange(len(names) * rank, device=like.device) // rank
    slots = {name: slot for slot, name in enumerate(names)}
    layer.__dict__[_STACKS] = (key, slots, a_cat, b_cat, scales, blocks)
    return slots, a_cat, b_cat, scales, blocks
