"""Which device and precision a run uses; never a silent fallback.

`auto` picks CUDA, then MPS, then CPU. Precision `auto` is bf16 on a CUDA GPU that supports it,
fp32 everywhere else: fp16 turns T5's loss into NaN, MPS has no reliable fp16/bf16 training, and a CPU
without bf16 instructions (like this project's AVX2 machines) runs bf16 ~30x slower than fp32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from loraqa import families
from loraqa.allocator import active_allocator
from loraqa.errors import ConfigError, DeviceError


@dataclass(frozen=True)
class DevicePlan:
    device: str  # cpu, cuda, mps
    precision: str  # fp32, bf16, fp16
    description: str  # what is printed: the device actually used

    @property
    def torch_device(self) -> torch.device:
        # Under torchrun each process has its own GPU: cuda:LOCAL_RANK, as Trainer places it.
        if self.device == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device(self.device)


def resolve_device(requested: str) -> str:
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "training.device is 'cuda' but no CUDA device is available (torch.cuda.is_available() is False)"
        )
    if requested == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("training.device is 'mps' but Apple MPS is not available on this machine")
    return requested


def resolve_precision(requested: str, device: str, model_type: str) -> str:
    if requested == "fp16" and families.fp16_unsafe(model_type):
        raise ConfigError("training.precision", f"fp16 makes {model_type} losses NaN; use bf16 (Ampere+ GPUs) or fp32")
    if requested == "fp16" and device != "cuda":
        raise ConfigError("training.precision", f"fp16 mixed precision needs a CUDA GPU, not {device}")
    if requested == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("training.precision", "this GPU has no bf16 support; use fp32 (or fp16 for non-T5 models)")
    if requested != "auto":
        return requested
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def plan_device(requested_device: str, requested_precision: str, model_type: str) -> DevicePlan:
    device = resolve_device(requested_device)
    precision = resolve_precision(requested_precision, device, model_type)
    if device == "cuda":
        index = int(os.environ.get("LOCAL_RANK", "0"))  # this process's GPU under torchrun
        if index >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK is {index} but only {torch.cuda.device_count()} CUDA devices are visible")
        name = f"{index}: {torch.cuda.get_device_name(index)}"
        if torch.cuda.get_device_capability(index)[0] >= 8:
            # TF32 tensor cores: fp32 matmuls at near-bf16 speed on Ampere and newer.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        description = f"cuda ({name})"
    elif device == "mps":
        description = "mps (Apple GPU)"
    else:
        description = f"cpu ({torch.get_num_threads()} threads, {active_allocator()} allocator)"
    return DevicePlan(device, precision, f"{description}, {precision}")
