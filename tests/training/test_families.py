"""One suite over every formulation and family: train -> save -> reload -> predict.

After reloading the saved adapter onto a fresh base, answers must equal those the run reported.
"""

from __future__ import annotations

import json

import pytest
from peft import PeftModel
from run_helpers import tiny_config

from loraqa.data.sources import load_records
from loraqa.device import plan_device
from loraqa.inference.evaluate import predict_settings
from loraqa.inference.ready import load_ready_model, model_config_for_adapter
from loraqa.metrics import squad_scores
from loraqa.pipeline import run_training

FAMILY_FORMULATION = {
    "t5": "seq2seq",
    "gpt2": "causal",
    "llama": "causal",
    "bert": "extractive",
    "distilbert": "extractive",
}


RUNS = [(family, ()) for family in FAMILY_FORMULATION] + [("bert", ("model.use_token_type_ids=true",))]


@pytest.mark.parametrize(("family", "extra"), RUNS, ids=[*FAMILY_FORMULATION, "bert-segment-ids"])
def test_train_save_reload_predict(family, extra, tiny_model_dir, qa_files, tmp_path):
    config = tiny_config(tiny_model_dir(family), qa_files, tmp_path / "run", *extra)
    summary = run_training(config)
    run = tmp_path / "run"

    for name in ("config.yaml", "metrics.json", "predictions.json", "predictions.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    for name in ("adapter_config.json", "adapter_model.safetensors", "loraqa.json", "tokenizer_config.json"):
        assert (run / "adapter" / name).is_file(), name
    assert not list((run / "adapter").glob("*.bin")), "no pickle files"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["count"] == 8
    # The reported scores are the official ones of the reported answers (not merely in range).
    gold = {r.id: r.answer_texts for r in load_records(str(qa_files["test"])).records}
    official = squad_scores(json.loads((run / "predictions.json").read_text()), gold)
    assert (metrics["exact_match"], metrics["f1"]) == pytest.approx((official["exact_match"], official["f1"]))
    assert summary["baseline"]["count"] == 8
    meta = json.loads((run / "adapter" / "loraqa.json").read_text())
    assert meta["formulation"] == FAMILY_FORMULATION[family]

    reported = json.loads((run / "predictions.json").read_text())
    model_config = model_config_for_adapter(run / "adapter", config.model)
    plan = plan_device("cpu", "auto", meta["model_type"])
    ready = load_ready_model(model_config, plan, str(run / "adapter"))
    records = load_records(str(qa_files["test"])).records
    settings = predict_settings(config, version_2=False)
    result = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings)
    assert {p.id: p.text for p in result.predictions} == reported
    # Confidences are continuous: equal confidences mean the very same weights came back.
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    reported_confidence = {row["id"]: row["confidence"] for row in rows}
    for p in result.predictions:
        assert p.confidence == pytest.approx(reported_confidence[p.id], rel=1e-4, abs=1e-6)
        assert 0.0 <= p.confidence <= 1.0
    # The unmerged adapter (the forward training used) answers as the merged model does. peft's
    # QUESTION_ANS model drops token_type_ids, which made BERT's two forwards disagree.
    unmerged = load_ready_model(model_config, plan, str(run / "adapter"), merge=False)
    again = unmerged.spec.formulation.predict(unmerged.model, unmerged.tokenizer, records, settings)
    assert {p.id: p.text for p in again.predictions} == reported
    for p in again.predictions:
        assert p.confidence == pytest.approx(reported_confidence[p.id], rel=1e-4, abs=1e-6)
    # ... and training changed the model: the baseline's confidences differ.
    baseline_rows = [json.loads(line) for line in (run / "baseline" / "predictions.jsonl").read_text().splitlines()]
    assert any(abs(row["confidence"] - reported_confidence[row["id"]]) > 1e-6 for row in baseline_rows)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_adapter_loads_with_vanilla_peft(family, tiny_model_dir, qa_files, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering

    config = tiny_config(tiny_model_dir(family), qa_files, tmp_path / "run", "evaluation.baseline=false")
    run_training(config)
    auto = AutoModelForCausalLM if family == "gpt2" else AutoModelForQuestionAnswering
    base = auto.from_pretrained(tiny_model_dir(family))
    model = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter"))
    assert any("lora_A" in name for name, _ in model.named_parameters())
