"""Refused LoRA variant combinations (one line, exit 2, no run directory), LoRA+ optimizer groups,
and the QLoRA merge decision, all on CPU."""

from __future__ import annotations

import json
import shutil

import pytest
from run_helpers import tiny_config, tiny_overrides

from loraqa.cli import main
from loraqa.config.validate import check_lora_for_model
from loraqa.errors import ConfigError

REFUSED = [
    (("lora.init=loftq",), "lora.init", "gpt2"),
    (("lora.init=svd",), "lora.init", "gpt2"),
    (("lora.init=pissa_niter_0",), "lora.init", "gpt2"),
    (("lora.init=pissa", "lora.use_dora=true"), "lora.use_dora", "gpt2"),
    (("lora.init=olora",), "lora.init", "gpt2"),  # Conv1D
    (("lora.quantize_base=4bit",), "lora.quantize_base", "gpt2"),  # planned on CPU
    (("lora.init=pissa", "lora.quantize_base=8bit"), "lora.quantize_base", "bert"),
    (("training.loraplus_lr_ratio=0.5",), "training.loraplus_lr_ratio", "bert"),
]


@pytest.mark.parametrize(("extra", "key", "family"), REFUSED, ids=[" ".join(e) for e, _, _ in REFUSED])
def test_refused_combinations(extra, key, family, tiny_model_dir, qa_files, tmp_path, capsys, monkeypatch):
    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the refusal")

    monkeypatch.setattr("loraqa.pipeline.prepare_phase.load_model", no_weights)
    run = tmp_path / "run"
    code = main(["train", *tiny_overrides(tiny_model_dir(family), qa_files, run, *extra)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("loraqa: error: ") and key in err[-1], err
    assert sum(line.startswith("loraqa: error") for line in err) == 1
    assert not run.exists()


def test_quantize_base_needs_bitsandbytes_on_cuda(monkeypatch):
    from loraqa.config.schema import LoraSettings

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"lora.quantize_base.*pip install bitsandbytes"):
        check_lora_for_model(LoraSettings(quantize_base="4bit"), "llama", "cuda")
    check_lora_for_model(LoraSettings(), "llama", "cuda")  # nothing asked, nothing needed


def test_loraplus_optimizer_groups(tiny_model_dir, qa_files, tmp_path):
    """B matrices learn at ratio x learning_rate, A matrices at learning_rate (peft's LoRA+)."""
    from transformers import TrainingArguments

    from loraqa.lora.adapter import attach_lora
    from loraqa.models.loading import inspect_base, load_model, load_tokenizer
    from loraqa.training.trainer import QATrainer

    config = tiny_config(tiny_model_dir("llama"), qa_files, tmp_path / "run", "training.loraplus_lr_ratio=8")
    spec = inspect_base(config.model)
    tokenizer = load_tokenizer(spec, config.model)
    model = attach_lora(
        load_model(spec, config.model, tokenizer, "cpu"), config.lora, spec.formulation, spec.model_type
    )
    args = TrainingArguments(output_dir=str(tmp_path / "out"), learning_rate=1e-3, report_to=[], use_cpu=True)
    trainer = QATrainer(
        model=model, args=args, formulation=spec.formulation, qa_evaluator=None, nan_hint="", loraplus_lr_ratio=8.0
    )
    trainer.create_optimizer()
    lr_of = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    b = [n for n in names if "lora_B" in n and names[n].requires_grad]
    a = [n for n in names if "lora_A" in n and names[n].requires_grad]
    assert b and a
    assert [lr_of[id(names[n])] for n in b] == pytest.approx([8e-3] * len(b))
    assert [lr_of[id(names[n])] for n in a] == pytest.approx([1e-3] * len(a))
    plain = QATrainer(model=model, args=args, formulation=spec.formulation, qa_evaluator=None, nan_hint="")
    plain.create_optimizer()
    assert {g["lr"] for g in plain.optimizer.param_groups} == {1e-3}


def test_merge_of_quantized_base_adapter_uses_full_precision(tiny_model_dir, qa_files, tmp_path, capsys, monkeypatch):
    """An adapter whose loraqa.json says quantize_base=4bit merges into the fp32 base, with a notice.
    (Its training needs CUDA; here the adapter of a plain run is relabelled, which is what merge reads.)"""
    import loraqa.inference.ready as inference
    from loraqa.pipeline import run_training

    run = tmp_path / "run"
    run_training(tiny_config(tiny_model_dir("bert"), qa_files, run, "evaluation.baseline=false"))
    meta_path = run / "adapter" / "loraqa.json"
    meta = json.loads(meta_path.read_text())
    assert meta["quantize_base"] == "none"
    meta["quantize_base"] = "4bit"
    meta_path.write_text(json.dumps(meta))
    calls = []
    real = inference.load_model

    def spy(*args, **kwargs):
        calls.append(kwargs.get("quantize", "none"))
        model = real(*args, **kwargs)
        assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
        return model

    monkeypatch.setattr(inference, "load_model", spy)
    out = tmp_path / "merged"
    assert main(["merge", "--adapter", str(run / "adapter"), "--output", str(out)]) == 0
    assert calls == ["none"]
    assert "4bit base (QLoRA); merging into the full-precision base" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file()
    shutil.rmtree(out)
