"""scripts/gpu_check.py's arithmetic, on the CPU: the peak table, the FLOP and real-token counts (issue 30 §2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import gpu_check  # noqa: E402


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA A10G", 125.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("Tesla T4", 65.0),
        ("Quadro P1000", None),
    ],
)
def test_the_peak_is_the_cards_not_a_shorter_names(name, peak):
    assert gpu_check.peak_tflops(name) == peak


def test_real_tokens_count_no_padding_and_a_shared_prefix_once():
    batch = {
        "input_ids": torch.zeros(2, 5, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
        "prefix_attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]]),
        "labels": torch.full((2, 5), -100),
        "logits_to_keep": 3,
    }
    assert gpu_check.batch_tokens(batch, encoder_decoder=False) == {"enc": 12, "dec": 0, "head": 6}
    seq2seq = {
        "input_ids": torch.zeros(2, 4, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
        "labels": torch.tensor([[5, 6, 1], [7, 1, -100]]),
    }
    assert gpu_check.batch_tokens(seq2seq, encoder_decoder=True) == {"enc": 6, "dec": 5, "head": 5}


def test_flops_are_four_times_the_matmul_weights_each_token_passes(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("gpt2"))
    params = gpu_check.matmul_params(model)
    config = model.config
    d, layers, vocab = config.n_embd, config.n_layer, config.vocab_size
    # per block: c_attn d x 3d, c_proj d x d, c_fc d x 4d, mlp c_proj 4d x d = 12 d^2; embeddings are lookups
    assert params == {"enc": 12 * d * d * layers, "dec": 0, "head": vocab * d}
    assert gpu_check.train_flops(params, {"enc": 10, "dec": 0, "head": 2}) == 4 * (
        12 * d * d * layers * 10 + vocab * d * 2
    )
