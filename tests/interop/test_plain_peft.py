"""An adapter loraqa saves answers the same under plain transformers + peft, called the standard way.

For every tiny family: train with loraqa, then load the adapter with `PeftModel.from_pretrained` on
the base its adapter_config.json names, and the `loraqa merge` output with `Auto*.from_pretrained`;
call them as the adapter's README says (the tokenizer's output as it is, BERT's token_type_ids
included; `generate` for generative models) and compare with what loraqa predicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from run_helpers import adapter_dependent_overrides, tiny_config
from tiny_models import FAMILIES
from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, AutoTokenizer

from loraqa.cli import main
from loraqa.data.sources import load_records
from loraqa.device import plan_device
from loraqa.formulations.extractive import Window, best_answer
from loraqa.inference.evaluate import predict_settings
from loraqa.inference.ready import load_ready_model, model_config_for_adapter
from loraqa.pipeline import run_training

AUTO = {
    "t5": AutoModelForSeq2SeqLM,
    "gpt2": AutoModelForCausalLM,
    "llama": AutoModelForCausalLM,
    "bert": AutoModelForQuestionAnswering,
    "distilbert": AutoModelForQuestionAnswering,
}
MAX_NEW_TOKENS = 4  # tiny_overrides' generation.max_new_tokens


def _train(family: str, tiny_model_dir, qa_files, out: Path):
    config = tiny_config(tiny_model_dir(family), qa_files, out, *adapter_dependent_overrides(family))
    run_training(config)
    return config


def _loraqa_answers(config, adapter: Path, records) -> tuple[object, dict[str, str]]:
    meta = json.loads((adapter / "loraqa.json").read_text())
    ready = load_ready_model(
        model_config_for_adapter(adapter, config.model), plan_device("cpu", "auto", meta["model_type"]), str(adapter)
    )
    settings = predict_settings(config, version_2=False)
    result = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings)
    return ready, {p.id: p.text for p in result.predictions}


def _plain_peft(adapter: Path, family: str):
    """The README's recipe: the base adapter_config.json names, the adapter on it, the adapter's tokenizer."""
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AUTO[family].from_pretrained(base), str(adapter)).eval()
    return model, AutoTokenizer.from_pretrained(str(adapter))


def _merged(adapter: Path, out: Path, family: str):
    assert main(["merge", "--adapter", str(adapter), "--output", str(out), "training.device=cpu"]) == 0
    return AUTO[family].from_pretrained(str(out)).eval(), AutoTokenizer.from_pretrained(str(out))


def _generate(model, tokenizer, family: str, record, template: str | None) -> str:
    """The standard call: the documented prompt (a causal adapter's is the template its loraqa.json records,
    filled in with str.format), the tokenizer's output, greedy generate."""
    if family == "t5":
        inputs = tokenizer(f"question: {record.question} context: {record.context}", return_tensors="pt")
    else:
        body = template.format(context=record.context, question=record.question)
        if tokenizer.chat_template:
            messages = [{"role": "user", "content": body}]
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            inputs = tokenizer(body + "\nAnswer:", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    new = out[0] if family == "t5" else out[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True).strip().split("\n", 1)[0].strip()


def _check_extractive(model, tokenizer, ready, records, config, expected: dict[str, str]) -> None:
    """Same start/end logits as loraqa's forward on loraqa's features, same argmax, same answers."""
    formulation = ready.spec.formulation
    settings = predict_settings(config, version_2=False)
    for record in records:
        encoded = tokenizer(record.question, record.context, return_tensors="pt", return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            plain = model(**encoded)
        [window] = formulation.windows([record], ready.tokenizer)
        assert window.input_ids == encoded["input_ids"][0].tolist()
        batch = formulation.collate(
            [
                {
                    "input_ids": window.input_ids,
                    "attention_mask": [1] * len(window.input_ids),
                    **({"token_type_ids": window.token_type_ids} if window.token_type_ids else {}),
                }
            ],
            ready.tokenizer,
        )
        with torch.no_grad():
            ours = ready.model(**batch)
        torch.testing.assert_close(plain.start_logits, ours.start_logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(plain.end_logits, ours.end_logits, atol=1e-4, rtol=0)
        assert int(plain.start_logits.argmax()) == int(ours.start_logits.argmax())
        assert int(plain.end_logits.argmax()) == int(ours.end_logits.argmax())
        spans = [tuple(o) if s == 1 else None for o, s in zip(offsets, encoded.sequence_ids(0), strict=True)]
        candidate = (
            Window(0, window.input_ids, None, spans, 0, 0),
            plain.start_logits[0].numpy(),
            plain.end_logits[0].numpy(),
        )
        text, _ = best_answer(record, [candidate], settings, ready.model_config.max_answer_length)
        assert text == expected[record.id], record.id


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_peft_and_merged_model_answer_as_loraqa(family, tiny_model_dir, qa_files, tmp_path):
    config = _train(family, tiny_model_dir, qa_files, tmp_path / "run")
    adapter = tmp_path / "run" / "adapter"
    records = load_records(str(qa_files["test"])).records
    ready, expected = _loraqa_answers(config, adapter, records)
    assert any(expected.values()), "an untrained-looking adapter would make this test trivial"

    for model, tokenizer in (_plain_peft(adapter, family), _merged(adapter, tmp_path / "merged", family)):
        if family in ("bert", "distilbert"):
            if family == "bert":
                sample = tokenizer(records[0].question, records[0].context)
                assert any(sample["token_type_ids"]), "the standard call must carry segment 1 to mean anything"
            _check_extractive(model, tokenizer, ready, records, config, expected)
        else:
            template = json.loads((adapter / "loraqa.json").read_text())["model_config"]["prompt_template"]
            assert {r.id: _generate(model, tokenizer, family, r, template) for r in records} == expected
