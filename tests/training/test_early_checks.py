"""Everything that can be checked without training is checked before the baseline and before the
run directory is claimed; a refused run leaves nothing behind (issue 13, items 1 and 5)."""

from __future__ import annotations

import pytest
from run_helpers import tiny_config

import loraqa.pipeline.evaluate_phase as evaluate_phase
import loraqa.pipeline.prepare_phase as prepare_phase
from loraqa.errors import ConfigError
from loraqa.pipeline import run_training


@pytest.fixture
def no_baseline_allowed(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("evaluated before the refusal")

    monkeypatch.setattr(evaluate_phase, "evaluate_records", refuse)


def test_a_misspelt_target_module_is_refused_before_the_baseline_listing_valid_names(
    tiny_model_dir, qa_files, tmp_path, monkeypatch, no_baseline_allowed
):
    run = tmp_path / "run"
    with pytest.raises(ConfigError) as caught:
        run_training(tiny_config(tiny_model_dir("llama"), qa_files, run, "lora.target_modules=q_proj,v_projj"))
    message = str(caught.value)
    assert "'v_projj'" in message and "q_proj, k_proj, v_proj, o_proj" in message and "\n" not in message
    assert not run.exists()
    monkeypatch.undo()
    run_training(
        tiny_config(
            tiny_model_dir("llama"),
            qa_files,
            run,
            "lora.target_modules=q_proj,v_proj",
            "training.max_steps=1",
            "evaluation.baseline=false",
        )
    )  # no --overwrite
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_the_trainable_share_is_refused_before_the_baseline(tiny_model_dir, qa_files, tmp_path, no_baseline_allowed):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="modules_to_save 'lm_head'"):
        run_training(
            tiny_config(
                tiny_model_dir("t5"),
                qa_files,
                run,
                "lora.allow_large_trainable_share=false",
                "lora.modules_to_save=[lm_head]",
            )
        )
    assert not run.exists()


def test_a_window_longer_than_the_positions_is_refused_before_loading(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("weights loaded before the refusal")

    monkeypatch.setattr(prepare_phase, "load_model", refuse)
    run = tmp_path / "run"
    with pytest.raises(ConfigError) as caught:  # the tiny BERT has 256 positions
        run_training(tiny_config(tiny_model_dir("bert"), qa_files, run, "model.max_seq_length=384"))
    assert "'model.max_seq_length'" in str(caught.value) and "max_position_embeddings = 256" in str(caught.value)
    assert not run.exists()


def test_t5_has_no_position_limit(tiny_model_dir):
    from transformers import AutoConfig

    from loraqa.config.validate import check_position_limit

    check_position_limit(100_000, "t5", AutoConfig.from_pretrained(tiny_model_dir("t5")))


def test_a_rank_no_adapted_layer_can_use_is_refused_before_loading(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    """lora.r=100000 allocated gigabytes before anything refused it: LoRA's B @ A has rank at most
    min(in, out), so the rank is checked against the architecture's shapes, before any weight."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights loaded before the refusal")

    monkeypatch.setattr(prepare_phase, "load_model", refuse)
    run = tmp_path / "run"
    for rank in ("100000", str(2**70)):  # the tiny GPT-2 is 32 wide
        with pytest.raises(ConfigError) as caught:
            run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, run, f"lora.r={rank}"))
        assert "'lora.r'" in str(caught.value) and "use at most 32" in str(caught.value)
    assert not run.exists()


def test_the_usable_rank_is_each_adapted_layers_smaller_side(tiny_model_dir):
    from transformers import AutoConfig

    from loraqa.config.schema import LoraSettings
    from loraqa.lora.rank import check_rank, usable_ranks

    llama = AutoConfig.from_pretrained(tiny_model_dir("llama"))  # 32 wide, 2 key/value heads of 8: v_proj is 32 -> 16
    assert usable_ranks(llama, ["q_proj", "v_proj"]) == {"q_proj": 32, "v_proj": 16}
    check_rank(LoraSettings(r=32, target_modules=["q_proj", "v_proj"]), llama, "llama")  # q_proj can use it all
    with pytest.raises(ConfigError, match="the largest is 16 .*v_proj"):
        check_rank(LoraSettings(r=17, target_modules=["v_proj"]), llama, "llama")
    assert usable_ranks(llama, "all-linear")["down_proj"] == 32  # 64 -> 32
