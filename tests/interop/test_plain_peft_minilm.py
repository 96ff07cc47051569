"""The offline minilm-l6's adapter answers the same under plain transformers + peft (issue 14, first bar).

tests/interop/test_plain_peft.py shows it for the tiny families; bench/plain_peft_agreement.py
measured it on the main job's adapter (435/435). This runs it in the suite on the real MiniLM: a few
steps at a high learning rate, so the adapter moves every answer away from the base's, then the
README's recipe (`PeftModel.from_pretrained` on the base adapter_config.json names, the offline
package's copy of those weights, the tokenizer's output as it is, token_type_ids included) must
give loraqa's start/end logits, argmax and answers on >= 99% of the questions.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from run_helpers import tiny_config
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from loraqa.data.sources import load_records
from loraqa.device import plan_device
from loraqa.formulations.extractive import Window, best_answer
from loraqa.inference.evaluate import predict_settings
from loraqa.inference.ready import load_ready_model, model_config_for_adapter
from loraqa.models.offline import resolve_model_path
from loraqa.pipeline import run_training

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what minilm-l6 is a copy of (models/offline.py)


@pytest.mark.integration
def test_minilm_adapter_answers_as_loraqa_under_plain_peft(qa_files, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(
        "minilm-l6",
        qa_files,
        run,
        "training.max_steps=4",
        "training.learning_rate=5e-2",
        "model.max_seq_length=128",
        "model.doc_stride=64",
    )
    run_training(config)
    adapter = run / "adapter"
    records = load_records(str(qa_files["test"])).records
    ours = json.loads((run / "predictions.json").read_text(encoding="utf-8"))
    base_answers = json.loads((run / "baseline" / "predictions.json").read_text(encoding="utf-8"))
    assert all(ours.values()), "every question answered with a span"
    changed = sum(ours[r.id] != base_answers[r.id] for r in records)
    assert changed >= len(records) // 2, f"the adapter changed only {changed} answers: agreement would be trivial"

    named = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert named == MINILM_HUB_ID  # offline, the package holds that model's weights (the adapter README says so)
    base = AutoModelForQuestionAnswering.from_pretrained(resolve_model_path("minilm-l6"))
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    sample = tokenizer(records[0].question, records[0].context)
    assert any(sample["token_type_ids"]), "the standard call must carry segment 1 for this test to mean anything"

    ready = load_ready_model(
        model_config_for_adapter(adapter, config.model), plan_device("cpu", "auto", "bert"), str(adapter)
    )
    formulation, settings = ready.spec.formulation, predict_settings(config, version_2=False)
    same = 0
    for record in records:
        encoded = tokenizer(record.question, record.context, return_tensors="pt", return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            plain = model(**encoded)  # the standard call: input_ids, token_type_ids, attention_mask
        [window] = formulation.windows([record], ready.tokenizer)  # one window: the context fits
        assert window.input_ids == encoded["input_ids"][0].tolist()
        feature = {"input_ids": window.input_ids, "attention_mask": [1] * len(window.input_ids)}
        if window.token_type_ids is not None:  # loraqa's features, as training and evaluation build them
            feature["token_type_ids"] = window.token_type_ids
        batch = formulation.collate([feature], ready.tokenizer)
        with torch.no_grad():
            loraqas = ready.model(**batch)
        torch.testing.assert_close(plain.start_logits, loraqas.start_logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(plain.end_logits, loraqas.end_logits, atol=1e-4, rtol=0)
        spans = [tuple(o) if s == 1 else None for o, s in zip(offsets, encoded.sequence_ids(0), strict=True)]
        candidate = (
            Window(0, window.input_ids, None, spans, 0, 0),
            plain.start_logits[0].numpy(),
            plain.end_logits[0].numpy(),
        )
        text, _ = best_answer(record, [candidate], settings, config.model.max_answer_length)
        same += text == ours[record.id]
    assert same >= 0.99 * len(records), f"plain peft answered as loraqa on {same} of {len(records)} questions"
