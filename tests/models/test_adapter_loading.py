"""Segment ids: ignored unless asked for, and a plain-peft QUESTION_ANS adapter answers as it was trained."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from loraqa.config.schema import ModelConfig
from loraqa.lora.adapter import load_adapter
from loraqa.models.loading import inspect_base, load_model, load_tokenizer


def test_peft_question_answering_adapter_answers_as_trained(tiny_model_dir, tmp_path, capsys):
    model_dir = tiny_model_dir("bert")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    trained = get_peft_model(
        AutoModelForQuestionAnswering.from_pretrained(model_dir),
        LoraConfig(r=4, target_modules=["query", "value"], task_type="QUESTION_ANS"),
    )
    with torch.no_grad():  # a trained adapter: non-zero B, a head unlike the base's
        for name, param in trained.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.normal_(0, 0.5)
    trained.save_pretrained(tmp_path / "adapter")
    trained.eval()

    batch = tokenizer(["who is it?"], ["it is the tiny model in a test."], return_tensors="pt")
    assert batch["token_type_ids"].any(), "the pair must use segment 1 for the test to mean anything"
    with torch.no_grad():
        as_trained = trained(**batch).start_logits  # peft's QA forward drops token_type_ids

        base = AutoModelForQuestionAnswering.from_pretrained(model_dir)
        loaded = load_adapter(base, tokenizer, tmp_path / "adapter", "tiny-bert", base.config, {})
        merged = loaded.merge_and_unload().eval()
        answered = merged(**batch).start_logits

    torch.testing.assert_close(answered, as_trained, rtol=1e-4, atol=1e-5)
    assert "ignores token_type_ids" in capsys.readouterr().err


@pytest.mark.parametrize("use_segments", [False, True])
def test_segment_ids_reach_the_model_only_when_asked(use_segments, tiny_model_dir):
    config = ModelConfig(name=str(tiny_model_dir("bert")), use_token_type_ids=use_segments)
    spec = inspect_base(config)
    tokenizer = load_tokenizer(spec, config)
    model = load_model(spec, config, tokenizer, torch.device("cpu")).eval()
    batch = tokenizer(["who is it?"], ["it is the tiny model in a test."], return_tensors="pt")
    assert batch["token_type_ids"].any()
    with torch.no_grad():
        with_segments = model(**batch).start_logits
        without = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).start_logits
    assert torch.equal(with_segments, without) != use_segments
