"""`--resume` of runs launched with the shipped DeepSpeed and FSDP configs (configs/accelerate/): their
checkpoints keep the optimizer state in the launcher's own files, not `optimizer.pt`. They are recognised
as complete, and resuming one under another launcher is refused with one line instead of training on
with a fresh optimizer (issue 30 §7). The layouts are Trainer 5's and accelerate's file names."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers.trainer_callback import TrainerState

from loraqa.errors import TrainingError
from loraqa.training.trainer import checkpoint_layout, is_complete_checkpoint, last_complete_checkpoint

# What each launcher's save writes besides trainer_state.json (deepspeed-zero2.yaml; fsdp.yaml: sharded).
LAYOUTS = {
    "plain": ["adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"],
    "deepspeed": [
        "adapter_model.safetensors",
        "adapter_config.json",
        "scheduler.pt",
        "rng_state_0.pth",
        "latest",
        "global_step4/mp_rank_00_model_states.pt",
        "global_step4/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
    ],
    "fsdp": ["pytorch_model_fsdp_0/__0_0.distcp", "optimizer_0/__0_0.distcp", "scheduler.pt", "rng_state_0.pth"],
}


def _checkpoint(root, layout: str, step: int = 4, without: str | None = None):
    folder = root / f"checkpoint-{step}"
    for name in LAYOUTS[layout]:
        if without and name.startswith(without):
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name == "adapter_model.safetensors":
            save_file({"lora_A.weight": torch.zeros(2, 2)}, str(folder / name))
        else:
            (folder / name).write_bytes(b"x")
    TrainerState(global_step=step).save_to_json(str(folder / "trainer_state.json"))
    return folder


@pytest.mark.parametrize(
    "layout, env", [("plain", None), ("deepspeed", "ACCELERATE_USE_DEEPSPEED"), ("fsdp", "ACCELERATE_USE_FSDP")]
)
def test_each_launchers_checkpoint_is_complete_and_resumed_under_that_launcher(layout, env, tmp_path, monkeypatch):
    folder = _checkpoint(tmp_path, layout)
    assert checkpoint_layout(str(folder)) == layout and is_complete_checkpoint(str(folder))
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if env:
        monkeypatch.setenv(env, "true")  # what `accelerate launch --config_file configs/accelerate/...` sets
    assert last_complete_checkpoint(str(tmp_path)) == str(folder)


LAUNCHER_VARIABLES = ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP")


@pytest.mark.parametrize(
    "layout, without", [("deepspeed", "global_step4/bf16"), ("fsdp", "optimizer_0"), ("deepspeed", "scheduler.pt")]
)
def test_a_launchers_checkpoint_without_its_optimizer_state_is_incomplete(layout, without, tmp_path):
    assert not is_complete_checkpoint(str(_checkpoint(tmp_path, layout, without=without)))


@pytest.mark.parametrize(
    "layout, env",
    [("deepspeed", None), ("fsdp", None), ("plain", "ACCELERATE_USE_DEEPSPEED"), ("fsdp", "ACCELERATE_USE_DEEPSPEED")],
)
def test_resuming_under_another_launcher_is_refused(layout, env, tmp_path, monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if env:
        monkeypatch.setenv(env, "true")
    folder = _checkpoint(tmp_path, layout)
    with pytest.raises(TrainingError, match="resume with the launcher and --config_file that wrote it") as caught:
        last_complete_checkpoint(str(tmp_path))
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)
