"""The config tree: shipped configs parse, bad keys/types/values fail with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from loraqa.config.loader import load_config, save_config
from loraqa.config.shipped import SHIPPED_DIR
from loraqa.errors import ConfigError, DeviceError
from loraqa.training.device import plan_device

CONFIGS = sorted(SHIPPED_DIR.glob("*.yaml"))


def test_there_are_shipped_configs():
    names = {p.stem for p in CONFIGS}
    assert {"minilm-l6-squad", "smollm2-135m-squad", "flan-t5-small-squad", "flan-t5-base-squad",
            "t5-base-all-linear", "gpt2-squad", "distilbert-squad-v2"} <= names  # fmt: skip


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses_and_names_its_command(path):
    config = load_config(str(path))
    assert config.name
    first = path.read_text().splitlines()[0]
    assert first == f"# loraqa train {path.stem}"


def test_defaults_load_without_a_file():
    config = load_config(None)
    assert config.model.name == "minilm-l6"
    assert config.data.test == "squad-v1.1:dev"


def test_overrides_are_typed():
    config = load_config(None, ["training.learning_rate=1e-4", "lora.r=16", "lora.target_modules=q,v",
                                "data.train_samples=500", "training.eval_steps=null",
                                "lora.layers_to_transform=3,4,5"])  # fmt: skip
    assert config.training.learning_rate == pytest.approx(1e-4)
    assert config.lora.r == 16
    assert config.lora.target_modules == "q,v"
    assert config.data.train_samples == 500
    assert config.lora.layers_to_transform == [3, 4, 5]
    assert load_config(None, ["lora.layers_to_transform=upper_half"]).lora.layers_to_transform == "upper_half"


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("trainig.learning_rate=1", "trainig", "unknown key"),
        ("training.learnig_rate=1", "training.learnig_rate", "unknown key"),
        ("lora.r=abc", "lora.r", "integer"),
        ("lora.r=0", "lora.r", "at least 1"),
        ("training.learning_rate=-1e-4", "training.learning_rate", "> 0"),
        ("training.precision=fp8", "training.precision", "one of"),
        ("lora.lora_dropout=1.5", "lora.lora_dropout", "[0, 1)"),
        ("training.warmup_ratio=2", "training.warmup_ratio", "[0, 1)"),
        ("data.train_samples=0", "data.train_samples", "> 0"),
        ("model.closed_book=yes please", "model.closed_book", "true or false"),
        ("training.load_best_model_at_end=true", "training.load_best_model_at_end", "eval_strategy"),
        ("training.early_stopping_patience=3", "training.early_stopping_patience", "load_best_model_at_end"),
        ("generation.decoding=beam-search", "generation.decoding", "unknown decoding"),
        ("name=a/b", "name", "without '/'"),
        ("lora.layers_to_transform=top", "lora.layers_to_transform", "upper_half"),
        ("lora.layers_to_transform=[]", "lora.layers_to_transform", ">= 0"),
        ("lora.layers_to_transform=[1,-2]", "lora.layers_to_transform", ">= 0"),
        ("evaluation.write_predictions=false", "evaluation.write_predictions", "unknown key"),
    ],
)
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    message = str(caught.value)
    assert f"'{key}'" in message and words in message
    assert "\n" not in message


def test_bare_no_means_the_string_no(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  save_strategy: no\n  eval_strategy: no\n")
    config = load_config(str(path), ["training.save_strategy=no"])
    assert (config.training.save_strategy, config.training.eval_strategy) == ("no", "no")


def test_best_model_needs_matching_save_strategy():
    with pytest.raises(ConfigError, match="training.save_strategy"):
        load_config(None, ["training.eval_strategy=steps", "training.eval_steps=10",
                           "training.load_best_model_at_end=true", "training.save_strategy=epoch"])  # fmt: skip


def test_eval_loss_selection_needs_the_loss():
    with pytest.raises(ConfigError, match="evaluation.with_loss"):
        load_config(None, ["training.metric_for_best_model=eval_loss", "evaluation.with_loss=false"])


def test_extractive_doc_stride_must_be_smaller_than_window():
    with pytest.raises(ConfigError, match="model.doc_stride"):
        load_config(None, ["model.formulation=extractive", "model.max_seq_length=64", "model.doc_stride=64"])


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(listing))


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["lora.r=4", "training.learning_rate=3e-4"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(str(tmp_path / "config.yaml")) == config


def test_fp16_on_t5_is_refused():
    with pytest.raises(ConfigError, match="NaN"):
        plan_device("cpu", "fp16", "t5")


def test_auto_precision_is_fp32_on_cpu():
    plan = plan_device("cpu", "auto", "llama")
    assert (plan.device, plan.precision) == ("cpu", "fp32")
    assert plan.description.startswith("cpu")


def test_cuda_where_there_is_none_is_an_error_not_a_fallback(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device"):
        plan_device("cuda", "auto", "bert")


def test_an_override_ending_in_a_colon_stays_text():
    assert load_config(None, ["data.train=hub:"]).data.train == "hub:"
    assert load_config(None, ["data.train=hub: x"]).data.train == "hub: x"
    assert load_config(None, ["lora.target_modules=[q, v]"]).lora.target_modules == ["q", "v"]
