"""The config tree: shipped configs parse, bad keys/types/values fail with a message naming the key."""

from __future__ import annotations

import pytest

from loraqa.config.loader import load_config, save_config
from loraqa.config.shipped import SHIPPED_DIR
from loraqa.device import plan_device
from loraqa.errors import ConfigError, DeviceError

CONFIGS = sorted(SHIPPED_DIR.glob("*.yaml"))


def test_there_are_shipped_configs():
    names = {p.stem for p in CONFIGS}
    assert {
        "minilm-l6-squad",
        "smollm2-135m-squad",
        "flan-t5-small-squad",
        "flan-t5-base-squad",
        "t5-base-all-linear",
        "gpt2-squad",
        "distilbert-squad-v2",
    } <= names


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
    config = load_config(
        None,
        [
            "training.learning_rate=1e-4",
            "lora.r=16",
            "lora.target_modules=q,v",
            "data.train_samples=500",
            "training.eval_steps=null",
            "lora.layers_to_transform=3,4,5",
        ],
    )
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
        ("training.learning_rate=-1e-4", "training.learning_rate", "must be in (0, 1]"),
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
        # nan passes every `<= 0` check, so non-finite numbers are refused first (issue 12, section 3)
        ("training.learning_rate=nan", "training.learning_rate", "finite"),
        ("training.learning_rate=inf", "training.learning_rate", "finite"),
        ("training.max_grad_norm=nan", "training.max_grad_norm", "finite"),
        ("training.max_grad_norm=inf", "training.max_grad_norm", "finite"),
        ("training.weight_decay=nan", "training.weight_decay", "finite"),
        ("training.warmup_ratio=nan", "training.warmup_ratio", "finite"),
        ("training.num_train_epochs=inf", "training.num_train_epochs", "finite"),
        ("training.early_stopping_threshold=nan", "training.early_stopping_threshold", "finite"),
        ("lora.lora_alpha=inf", "lora.lora_alpha", "finite"),
        ("lora.lora_dropout=nan", "lora.lora_dropout", "finite"),
        ("lora.max_trainable_share=nan", "lora.max_trainable_share", "finite"),
        ("evaluation.null_score_diff_threshold=-inf", "evaluation.null_score_diff_threshold", "finite"),
        ("training.seed=-1", "training.seed", "[0, 4294967295]"),
        ("data.seed=-3", "data.seed", "[0, 4294967295]"),
        ("training.seed=4294967296", "training.seed", "[0, 4294967295]"),
        ("training.lr_scheduler_type=cosinus", "training.lr_scheduler_type", "unknown scheduler 'cosinus'"),
        ("training.lr_scheduler_type=cosine_with_min_lr", "training.lr_scheduler_type", "scheduler arguments"),
        ("training.lr_scheduler_type=reduce_lr_on_plateau", "training.lr_scheduler_type", "eval_strategy"),
        # outside the sane ranges `loraqa config` shows (issue 25, point 10)
        ("training.learning_rate=1e30", "training.learning_rate", "must be in (0, 1], got 1e+30"),
        ("training.learning_rate=2", "training.learning_rate", "must be in (0, 1]"),
        ("training.learning_rate=0", "training.learning_rate", "must be in (0, 1]"),
        ("training.loraplus_lr_ratio=16000", "training.loraplus_lr_ratio", "learning rate of 3.2"),
        ("generation.decoding=topk0", "generation.decoding", "top_k must be in [1, 1000], got 0"),
        ("generation.decoding=topk5000", "generation.decoding", "top_k must be in [1, 1000]"),
        ("generation.decoding=topk" + "9" * 30, "generation.decoding", "top_k must be in [1, 1000]"),
        ("generation.decoding=topk" + "9" * 5000, "generation.decoding", "longer than 40 characters"),
        ("generation.decoding=beam0", "generation.decoding", "num_beams must be in [1, 64]"),
        ("generation.decoding=beam65", "generation.decoding", "num_beams must be in [1, 64]"),
        ("generation.decoding=topp0.0", "generation.decoding", "top_p must be in [0.01, 1]"),
        ("generation.decoding=temp0", "generation.decoding", "temperature must be in [0.01, 10]"),
        ("generation.decoding=temp1000", "generation.decoding", "temperature must be in [0.01, 10]"),
        # a key given twice: YAML would keep the last one silently
        ("training={learning_rate: 1e-4, learning_rate: 1}", "training", "'learning_rate' is given twice"),
    ],
)
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    message = str(caught.value)
    assert f"'{key}'" in message and words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "override",
    [
        "training.learning_rate=nan",
        "training.seed=-1",
        "training.lr_scheduler_type=cosinus",
        "training.max_grad_norm=inf",
    ],
)
def test_impossible_numbers_are_refused_before_anything_is_written(override, tmp_path, capsys):
    from loraqa.cli import main

    out = tmp_path / "run"
    # data that does not exist: were the number let through, the run would stop there, not train
    assert main(["train", override, f"output_dir={out}", f"data.train={tmp_path / 'absent.jsonl'}"]) == 2
    assert not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"loraqa: error: config key '{override.split('=')[0]}'") and "\n" not in err


def test_every_scheduler_transformers_knows_without_extra_arguments_is_accepted():
    from transformers import SchedulerType

    from loraqa.config.validate import SCHEDULERS, SCHEDULERS_NEEDING_KWARGS

    # the config's own list (it checks without importing transformers) is transformers' list
    assert set(SCHEDULERS) | set(SCHEDULERS_NEEDING_KWARGS) == {s.value for s in SchedulerType}
    for name in SCHEDULERS:
        if name != "reduce_lr_on_plateau":  # needs evaluations: tested above
            assert load_config(None, [f"training.lr_scheduler_type={name}"]).training.lr_scheduler_type == name


def test_bare_no_means_the_string_no(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  save_strategy: no\n  eval_strategy: no\n")
    config = load_config(str(path), ["training.save_strategy=no"])
    assert (config.training.save_strategy, config.training.eval_strategy) == ("no", "no")


def test_best_model_needs_matching_save_strategy():
    with pytest.raises(ConfigError, match="training.save_strategy"):
        load_config(
            None,
            [
                "training.eval_strategy=steps",
                "training.eval_steps=10",
                "training.load_best_model_at_end=true",
                "training.save_strategy=epoch",
            ],
        )


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


def test_the_edges_of_the_sane_ranges_are_accepted():
    config = load_config(None, ["training.learning_rate=1", "generation.decoding=topk1000"])
    assert config.training.learning_rate == 1.0
    for decoding in ("beam1", "beam64", "topk1", "topp0.01", "topp1", "temp0.01", "temp10"):
        load_config(None, [f"generation.decoding={decoding}"])


def test_loraqa_config_shows_the_sane_ranges():
    from loraqa.cli_parser import config_reference

    lines = {line.split(":")[0].strip(): line for line in config_reference().splitlines()}
    assert lines["training.learning_rate"].endswith("[in (0, 1]]")
    assert (
        "topkK: K in [1, 1000]" in lines["generation.decoding"]
        and "beamN: N in [1, 64]" in lines["generation.decoding"]
    )


@pytest.mark.parametrize(
    "text, key",
    [
        ("training:\n  learning_rate: 1e-4\n  learning_rate: 1\n", "'learning_rate'"),
        ("training:\n  seed: 1\nlora:\n  r: 4\ntraining:\n  seed: 2\n", "'training'"),
        ("lora:\n  target_modules: [q, v]\n  r: 4\n  r: 8\n", "'r'"),
    ],
    ids=["key", "section", "after a list"],
)
def test_a_key_given_twice_in_a_config_file_is_refused_naming_it(text, key, tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "twice.yaml" in str(caught.value) and f"{key} is given twice" in str(caught.value)


def test_a_yaml_merge_key_may_be_overridden_beside_it(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("lora: &base\n  r: 4\n  lora_alpha: 8\ntraining:\n  seed: 3\n")
    assert load_config(str(path)).lora.r == 4
    path.write_text("data:\n  seed: 5\nlora:\n  <<: {r: 4, lora_alpha: 8}\n  r: 16\n")
    config = load_config(str(path))
    assert (config.lora.r, config.lora.lora_alpha) == (16, 8.0)


def test_a_config_path_that_is_no_regular_file_of_a_sane_size_is_refused_unread(tmp_path):
    import os

    from loraqa.input_files import MAX_CONFIG_BYTES

    os.mkfifo(tmp_path / "fifo.yaml")  # reading it would block forever
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "huge.yaml").write_text("#" * (MAX_CONFIG_BYTES + 1))
    for path, words in [
        ("/dev/zero", "not a regular file"),
        (tmp_path / "fifo.yaml", "not a regular file"),
        (tmp_path / "folder.yaml", "is a directory"),
        (tmp_path / "huge.yaml", "over the 1 MiB limit"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config(str(path))
        assert str(path) in str(caught.value) and words in str(caught.value)
