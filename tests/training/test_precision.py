"""Which precision a run trains and answers in, per card and family (issue 30 §3, §6): bf16 only where
the card has it natively, fp16 with the loss scaler where it does not, fp32 for families fp16 breaks;
read from a fake capability table, so these run on any machine."""

from __future__ import annotations

import pytest
import torch

from loraqa import device
from loraqa.device import answer_dtype, frozen_base_dtype, plan_device, resolve_precision
from loraqa.errors import ConfigError

# Compute capabilities as torch.cuda.get_device_capability reports them.
CARDS = {
    "Tesla T4": (7, 5),
    "Tesla V100": (7, 0),
    "GeForce GTX 1650": (7, 5),
    "A100-SXM4-80GB": (8, 0),
    "NVIDIA A10G": (8, 6),
    "NVIDIA L4": (8, 9),
    "NVIDIA H100 80GB HBM3": (9, 0),
}


@pytest.mark.parametrize(
    "card, model_type, expected",
    [
        ("Tesla T4", "llama", "fp16"),
        ("Tesla V100", "bert", "fp16"),
        ("GeForce GTX 1650", "gpt2", "fp16"),
        ("A100-SXM4-80GB", "llama", "bf16"),
        ("NVIDIA L4", "bert", "bf16"),
        ("NVIDIA H100 80GB HBM3", "gpt2", "bf16"),
        ("Tesla T4", "t5", "fp32"),
        ("Tesla V100", "mt5", "fp32"),
        ("A100-SXM4-80GB", "t5", "bf16"),
    ],
)
def test_auto_precision_is_the_fastest_the_card_really_has(card, model_type, expected):
    assert resolve_precision("auto", "cuda", model_type, CARDS[card]) == expected


def test_explicit_bf16_is_refused_where_the_card_only_emulates_it():
    with pytest.raises(ConfigError, match="compute capability 7.5.*emulates bf16"):
        resolve_precision("bf16", "cuda", "llama", CARDS["Tesla T4"])
    assert resolve_precision("bf16", "cuda", "llama", CARDS["A100-SXM4-80GB"]) == "bf16"
    assert resolve_precision("fp16", "cuda", "llama", CARDS["A100-SXM4-80GB"]) == "fp16"  # asked for: kept


def test_bf16_on_mps_needs_macos_14(monkeypatch):
    monkeypatch.setattr(device, "mps_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="macOS 14"):
        resolve_precision("bf16", "mps", "llama")
    monkeypatch.setattr(device, "mps_has_bf16", lambda: True)
    assert resolve_precision("bf16", "mps", "llama") == "bf16"
    assert resolve_precision("auto", "mps", "llama") == "fp32"


def _fake_card(monkeypatch, name: str) -> list[str]:
    """torch.cuda answering as one card of CARDS; returns the list use_tf32 records its calls in."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: CARDS[name])
    # What the emulating cards answer: the check that let auto pick bf16 on them.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    calls: list[str] = []
    monkeypatch.setattr(device, "use_tf32", lambda: calls.append("tf32"))
    return calls


def test_a_t4_plans_fp16_and_no_tf32(monkeypatch):
    tf32 = _fake_card(monkeypatch, "Tesla T4")
    plan = plan_device("auto", "auto", "llama")
    assert (plan.device, plan.precision, plan.description) == ("cuda", "fp16", "cuda (0: Tesla T4), fp16")
    assert tf32 == []
    assert plan_device("auto", "auto", "t5").precision == "fp32"


def test_an_a100_plans_bf16_with_tf32(monkeypatch):
    tf32 = _fake_card(monkeypatch, "A100-SXM4-80GB")
    assert plan_device("cuda", "auto", "t5").precision == "bf16"
    assert tf32 == ["tf32"]


def test_tf32_uses_the_current_flag_not_the_deprecated_one():
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("torch < 2.9 has only the legacy flags")
    before = (matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the legacy allow_tf32 setters warn on torch >= 2.9
            device.use_tf32()
        assert (matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == ("tf32", "tf32")
    finally:
        matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before


def test_half_precision_holds_the_frozen_base_and_answers_on_cuda_only():
    bf16 = device.DevicePlan("cuda", "bf16", "")
    fp16 = device.DevicePlan("cuda", "fp16", "")
    fp32_cuda = device.DevicePlan("cuda", "fp32", "")
    cpu = device.DevicePlan("cpu", "fp32", "")
    mps = device.DevicePlan("mps", "bf16", "")
    assert frozen_base_dtype(bf16, plain_lora=True) == torch.bfloat16
    assert frozen_base_dtype(fp16, plain_lora=True) == torch.float16
    assert frozen_base_dtype(bf16, plain_lora=False) == torch.float32  # DoRA, added tokens, ...: fp32
    assert frozen_base_dtype(fp32_cuda, plain_lora=True) == torch.float32
    assert frozen_base_dtype(cpu, plain_lora=True) == frozen_base_dtype(mps, plain_lora=True) == torch.float32
    assert (answer_dtype(bf16), answer_dtype(fp16), answer_dtype(fp32_cuda)) == (
        torch.bfloat16,
        torch.float16,
        torch.float32,
    )
    assert answer_dtype(cpu) == answer_dtype(mps) == torch.float32


def test_the_qlora_compute_dtype_follows_the_precision():
    from loraqa.config.loader import load_config
    from loraqa.models.loading import quantization_kwargs
    from loraqa.pipeline.prepare_phase import base_dtype

    config = load_config(None, ["lora.quantize_base=4bit"])
    assert base_dtype(config, device.DevicePlan("cuda", "fp16", "")) == torch.float16
    assert base_dtype(config, device.DevicePlan("cuda", "bf16", "")) == torch.bfloat16
    kwargs = quantization_kwargs("4bit", torch.device("cpu"), torch.float16)
    assert kwargs["quantization_config"].bnb_4bit_compute_dtype == torch.float16
    plain = load_config(None, [])
    assert base_dtype(plain, device.DevicePlan("cuda", "fp16", "")) == torch.float16
    assert base_dtype(load_config(None, ["lora.use_dora=true"]), device.DevicePlan("cuda", "bf16", "")) == (
        torch.float32
    )
    assert base_dtype(plain, device.DevicePlan("cpu", "fp32", "")) == torch.float32


def test_no_pinned_memory_off_cuda_and_no_per_step_loss_filter(tmp_path):
    from loraqa.config.loader import load_config
    from loraqa.training.arguments import training_arguments

    config = load_config(None, [])
    args = training_arguments(config, device.DevicePlan("cpu", "fp32", ""), str(tmp_path), ["labels"])
    assert args.dataloader_pin_memory is False
    assert args.logging_nan_inf_filter is False  # it reads every micro-step's loss on the host


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_a_half_precision_base_trains_fp32_lora_weights_and_answers(
    family, tiny_model_dir, qa_files, tmp_path, monkeypatch
):
    """What a capable GPU does (bf16 frozen base, fp32 LoRA and heads, autocast), on the CPU: the
    dtype decision is patched in, the precision asked for explicitly (CPU bf16 is allowed, only slow)."""
    from run_helpers import tiny_config
    from safetensors.torch import load_file

    import loraqa.inference.ready as ready_module
    import loraqa.pipeline.prepare_phase as prepare_phase
    from loraqa.config.loader import load_config
    from loraqa.inference.ready import load_ready_model, model_config_for_adapter
    from loraqa.pipeline import run_training

    seen = {}
    attach = prepare_phase.attach_lora

    def attach_and_look(model, *args, **kwargs):
        peft_model = attach(model, *args, **kwargs)
        seen["frozen"] = {p.dtype for p in peft_model.parameters() if not p.requires_grad}
        seen["trainable"] = {p.dtype for p in peft_model.parameters() if p.requires_grad}
        return peft_model

    monkeypatch.setattr(prepare_phase, "frozen_base_dtype", lambda plan, plain_lora: torch.bfloat16)
    monkeypatch.setattr(prepare_phase, "attach_lora", attach_and_look)
    run = tmp_path / "run"
    summary = run_training(
        tiny_config(tiny_model_dir(family), qa_files, run, "training.precision=bf16", "training.save_strategy=no")
    )
    assert seen == {"frozen": {torch.bfloat16}, "trainable": {torch.float32}}  # the QA head's copy upcast too
    assert torch.isfinite(torch.tensor(summary["train_loss"]))
    assert summary["adapter"]["count"] == summary["baseline"]["count"] > 0  # answered under autocast
    saved = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    trained = {name: t.dtype for name, t in saved.items() if "lora_" in name or "qa_outputs" in name}
    assert trained and set(trained.values()) == {torch.float32}

    monkeypatch.setattr(ready_module, "answer_dtype", lambda plan: torch.bfloat16)
    config = load_config(None, [])
    model_config = model_config_for_adapter(str(run / "adapter"), config.model)
    plan = device.DevicePlan("cpu", "fp32", "")
    answering = load_ready_model(model_config, plan, str(run / "adapter"))
    assert {p.dtype for p in answering.model.parameters()} == {torch.bfloat16}  # merged in fp32, then cast
    merging = load_ready_model(model_config, plan, str(run / "adapter"), full_precision=True)
    assert {p.dtype for p in merging.model.parameters()} == {torch.float32}  # `loraqa merge` writes fp32
