"""Training knobs as users set them: best model, early stopping, checkpoint limits, NaN stop,
gradient checkpointing, added tokens, the trainable-share guard."""

from __future__ import annotations

import json

import pytest
import torch
from run_helpers import tiny_config

from loraqa.errors import ConfigError, TrainingError
from loraqa.pipeline import run_training
from loraqa.training.trainer import QATrainer

EVERY_STEP = (
    "training.eval_strategy=steps",
    "training.eval_steps=1",
    "training.save_strategy=steps",
    "training.save_steps=1",
)


def test_best_model_is_kept_and_never_rotated_away(tiny_model_dir, qa_files, tmp_path):
    config = tiny_config(
        tiny_model_dir("bert"),
        qa_files,
        tmp_path / "run",
        *EVERY_STEP,
        "training.max_steps=5",
        "training.save_total_limit=1",
        "training.load_best_model_at_end=true",
        "training.metric_for_best_model=eval_loss",
    )
    run_training(config)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    evals = [entry for entry in log if "eval_loss" in entry and "eval_f1" in entry]
    assert len(evals) == 5  # real QA evaluation every step
    best_step = min(evals, key=lambda e: e["eval_loss"])["step"]
    remaining = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert f"checkpoint-{best_step}" in remaining
    assert not (tmp_path / "run" / "checkpoints" / ".staging").exists()


def test_early_stopping_ends_training_early(tiny_model_dir, qa_files, tmp_path, capsys):
    config = tiny_config(
        tiny_model_dir("gpt2"),
        qa_files,
        tmp_path / "run",
        *EVERY_STEP,
        "training.max_steps=30",
        "training.learning_rate=1e-6",
        "training.load_best_model_at_end=true",
        "training.metric_for_best_model=f1",
        "training.early_stopping_patience=2",
        "evaluation.baseline=false",
    )
    summary = run_training(config)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    last_step = max(entry.get("step", 0) for entry in log)
    assert last_step < 30
    # what happened is said, in summary.json and on the console
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    stopping = summary["early_stopping"]
    assert stopping["stopped"] and stopping["step"] == last_step and stopping["evaluations_without_improvement"] == 2
    evals = [e for e in log if "eval_f1" in e]
    best = summary["best_model"]
    assert best["metric"] == "eval_f1" and best["checkpoint"] == f"checkpoint-{best['step']}"
    assert best["value"] == max(e["eval_f1"] for e in evals)
    assert best["step"] == next(e["step"] for e in evals if e["eval_f1"] == best["value"])  # the first best
    err = capsys.readouterr().err
    assert f"early stopping: stopped at step {last_step} of 30" in err
    assert f"best model: checkpoint-{best['step']} (step {best['step']}, validation eval_f1" in err


def test_nan_loss_stops_at_that_step_and_keeps_the_last_checkpoint(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    original = QATrainer.compute_loss

    def poisoned(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = original(self, model, inputs, return_outputs, num_items_in_batch)
        return loss * float("nan") if self.state.global_step == 2 else loss

    monkeypatch.setattr(QATrainer, "compute_loss", poisoned)
    config = tiny_config(
        tiny_model_dir("gpt2"),
        qa_files,
        tmp_path / "run",
        "training.save_strategy=steps",
        "training.save_steps=1",
        "training.max_steps=6",
        "evaluation.baseline=false",
    )
    with pytest.raises(TrainingError, match="became nan at step 3") as caught:
        run_training(config)
    assert f"the last good checkpoint is {tmp_path / 'run' / 'checkpoints' / 'checkpoint-2'}" in str(caught.value)
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-1", "checkpoint-2"]
    assert not (tmp_path / "run" / "adapter").exists()


def test_gradient_checkpointing_trains_lora(tiny_model_dir, qa_files, tmp_path):
    config = tiny_config(
        tiny_model_dir("llama"),
        qa_files,
        tmp_path / "run",
        "training.gradient_checkpointing=true",
        "evaluation.baseline=false",
    )
    summary = run_training(config)
    assert torch.isfinite(torch.tensor(summary["train_loss"]))


def test_added_tokens_survive_save_and_reload(tiny_model_dir, qa_files, tmp_path):
    from loraqa.device import plan_device
    from loraqa.inference.ready import load_ready_model, model_config_for_adapter

    config = tiny_config(
        tiny_model_dir("t5"), qa_files, tmp_path / "run", 'model.add_tokens=["[Question]"]', "evaluation.baseline=false"
    )
    run_training(config)
    adapter = tmp_path / "run" / "adapter"
    meta = json.loads((adapter / "loraqa.json").read_text())
    assert meta["embedding_rows"] == meta["vocab_size"] > 0
    ready = load_ready_model(
        model_config_for_adapter(adapter, config.model), plan_device("cpu", "auto", "t5"), str(adapter), merge=False
    )
    assert ready.tokenizer.convert_tokens_to_ids("[Question]") == meta["vocab_size"] - 1
    assert ready.model.get_input_embeddings().weight.shape[0] >= meta["vocab_size"]


def test_modules_to_save_trap_is_stopped_before_training(tiny_model_dir, qa_files, tmp_path):
    config = tiny_config(
        tiny_model_dir("t5"),
        qa_files,
        tmp_path / "run",
        "lora.allow_large_trainable_share=false",
        "lora.modules_to_save=[lm_head]",
    )
    with pytest.raises(ConfigError) as caught:
        run_training(config)
    assert "modules_to_save 'lm_head'" in str(caught.value)
    assert not (tmp_path / "run").exists()  # refused before the run directory was claimed


def test_squad_v2_data_reports_has_and_no_answer_scores(tiny_model_dir, qa_rows, tmp_path):
    from tiny_models import write_jsonl

    rows = [dict(r) for r in qa_rows]
    for r in rows[::3]:
        r.update(question=r["question"].replace("?", " on the moon?"), answers=[], is_impossible=True)
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", rows[:32]),
        "test": write_jsonl(tmp_path / "test.jsonl", rows[32:]),
    }
    for family in ("bert", "gpt2"):
        summary = run_training(
            tiny_config(tiny_model_dir(family), files, tmp_path / family, "evaluation.with_loss=false")
        )
        metrics = summary["adapter"]
        assert metrics["NoAns_total"] + metrics["HasAns_total"] == metrics["count"] == 8
        assert metrics["NoAns_total"] > 0
        assert "eval_loss" not in metrics  # evaluation.with_loss=false skips the teacher-forced pass


@pytest.mark.parametrize("family", ["t5", "gpt2", "llama", "bert", "distilbert"])
def test_upper_half_puts_lora_on_the_top_layers_only(tiny_model_dir, family):
    import re

    from loraqa.config.schema import LoraSettings, ModelConfig
    from loraqa.lora.adapter import attach_lora
    from loraqa.models.loading import inspect_base, load_model, load_tokenizer

    model_config = ModelConfig(name=str(tiny_model_dir(family)))
    spec = inspect_base(model_config)
    tokenizer = load_tokenizer(spec, model_config)
    model = load_model(spec, model_config, tokenizer, torch.device("cpu"))
    settings = LoraSettings(
        target_modules="attention", layers_to_transform="upper_half", allow_large_trainable_share=True
    )
    peft_model = attach_lora(model, settings, spec.formulation, spec.model_type)
    adapted = {
        int(re.search(r"\.(\d+)\.", name).group(1)) for name, _ in peft_model.named_parameters() if "lora_A" in name
    }
    assert adapted == {1}  # the tiny models have 2 layers per stack: only the top one is adapted


def test_upper_half_trains_and_the_adapter_records_its_layers(tiny_model_dir, qa_files, tmp_path):
    config = tiny_config(
        tiny_model_dir("bert"),
        qa_files,
        tmp_path / "run",
        "lora.layers_to_transform=upper_half",
        "evaluation.baseline=false",
    )
    summary = run_training(config)
    assert torch.isfinite(torch.tensor(summary["train_loss"]))
    saved = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert saved["layers_to_transform"] == [1]


def test_a_layer_the_model_lacks_is_named(tiny_model_dir, qa_files, tmp_path):
    config = tiny_config(tiny_model_dir("gpt2"), qa_files, tmp_path / "run", "lora.layers_to_transform=1,5")
    with pytest.raises(ConfigError) as caught:
        run_training(config)
    assert "'lora.layers_to_transform'" in str(caught.value) and "layer 5 does not exist" in str(caught.value)
    assert not (tmp_path / "run").exists()  # refused before the run directory or any weights


def test_a_data_set_under_200_questions_trains_with_and_without_validation(tiny_model_dir, qa_files, tmp_path):
    # 32 training questions and the default data.validation_samples=200
    plain = tiny_config(
        tiny_model_dir("bert"),
        qa_files,
        tmp_path / "plain",
        "data.validation_samples=200",
        "evaluation.baseline=false",
        "training.max_steps=1",
    )
    assert run_training(plain)["adapter"]["count"] > 0
    evaluated = tiny_config(
        tiny_model_dir("bert"),
        qa_files,
        tmp_path / "evaluated",
        "data.validation_samples=200",
        "evaluation.baseline=false",
        "training.max_steps=1",
        *EVERY_STEP,
    )
    run_training(evaluated)
    log = [json.loads(line) for line in (tmp_path / "evaluated" / "train_log.jsonl").read_text().splitlines()]
    assert [e["eval_count"] for e in log if "eval_f1" in e] == [3.0]  # a tenth of train
