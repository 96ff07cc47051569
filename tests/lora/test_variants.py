"""LoRA variants (docs/lora-variants.md): each trains, saves, reloads and merges with the same answers,
and loads in plain peft; LoRA+ builds its optimizer groups; refused combinations stop before loading.

Kept fast: each variant on GPT-2 (Conv1D, fan_in_fan_out), Llama (Linear) and BERT (extractive head
in modules_to_save), 3 steps of a tiny model.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from run_helpers import tiny_config

from loraqa.data.sources import load_records
from loraqa.device import plan_device
from loraqa.inference.evaluate import predict_settings
from loraqa.inference.ready import load_ready_model, model_config_for_adapter
from loraqa.pipeline import run_training

VARIANTS = {
    "dora": ("lora.use_dora=true",),
    "rslora": ("lora.use_rslora=true",),
    "gaussian": ("lora.init=gaussian",),
    "pissa": ("lora.init=pissa",),
    "pissa-niter": ("lora.init=pissa_niter_2", "lora.use_rslora=true"),
    "olora": ("lora.init=olora",),
    "dora-rslora-loraplus": ("lora.use_dora=true", "lora.use_rslora=true", "training.loraplus_lr_ratio=4"),
}
# Each variant on Conv1D (GPT-2) or Linear (Llama) layers and on the extractive head (BERT); OLoRA on
# GPT-2 is refused (test_refused_combinations).
MATRIX = [
    ("dora", "gpt2"),
    ("dora", "bert"),
    ("rslora", "llama"),
    ("gaussian", "bert"),
    ("pissa", "gpt2"),
    ("pissa", "bert"),
    ("pissa-niter", "llama"),
    ("olora", "llama"),
    ("olora", "bert"),
    ("dora-rslora-loraplus", "gpt2"),
]


def _logits(model, family, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return torch.cat([out.start_logits, out.end_logits], -1) if family == "bert" else out.logits


@pytest.mark.parametrize(("variant", "family"), MATRIX, ids=[f"{v}-{f}" for v, f in MATRIX])
def test_variant_trains_saves_reloads_merges(variant, family, tiny_model_dir, qa_files, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering

    run = tmp_path / "run"
    config = tiny_config(tiny_model_dir(family), qa_files, run, *VARIANTS[variant])
    summary = run_training(config)
    adapter = run / "adapter"
    reported = json.loads((run / "predictions.json").read_text())
    reported_confidence = {
        row["id"]: row["confidence"] for row in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())
    }
    assert summary["adapter"]["count"] == 8
    model_config = model_config_for_adapter(adapter, config.model)
    plan = plan_device("cpu", "auto", "x")
    records = load_records(str(qa_files["test"])).records
    settings = predict_settings(config, version_2=False)
    # The baseline is the untouched base, though PiSSA/OLoRA moved part of it into the adapter.
    base_ready = load_ready_model(config.model, plan, None)
    base_result = base_ready.spec.formulation.predict(base_ready.model, base_ready.tokenizer, records, settings)
    baseline_rows = {
        r["id"]: r for r in map(json.loads, (run / "baseline" / "predictions.jsonl").read_text().splitlines())
    }
    for p in base_result.predictions:
        assert p.confidence == pytest.approx(baseline_rows[p.id]["confidence"], rel=1e-4, abs=1e-6)
    answers = {}
    for merge in (True, False):
        ready = load_ready_model(model_config, plan, str(adapter), merge=merge)
        result = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings)
        answers[merge] = {p.id: p.text for p in result.predictions}
        for p in result.predictions:
            assert p.confidence == pytest.approx(reported_confidence[p.id], rel=1e-4, abs=1e-6)
    assert answers[True] == reported
    assert answers[False] == reported

    # Plain peft, on the untouched base, gives the logits loraqa's reloaded adapter gives.
    auto = AutoModelForQuestionAnswering if family == "bert" else AutoModelForCausalLM
    ready = load_ready_model(model_config, plan, str(adapter), merge=False)
    inputs = ready.tokenizer(["Where does Ada live? Ada lives in Avalon."], return_tensors="pt")
    inputs.pop("token_type_ids", None)
    ours = _logits(ready.model, family, inputs)
    plain = PeftModel.from_pretrained(auto.from_pretrained(tiny_model_dir(family)), str(adapter)).eval()
    theirs = _logits(plain, family, inputs)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    base = auto.from_pretrained(tiny_model_dir(family)).eval()
    assert not torch.allclose(_logits(base, family, inputs), theirs, atol=1e-4), "the adapter changes answers"
