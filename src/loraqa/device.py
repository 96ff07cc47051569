"""Which device and precision a run uses; never a silent fallback.

`auto` picks CUDA, then MPS, then CPU. Precision `auto` on CUDA is the fastest the card really has:
bf16 where it is native (compute capability 8.0 and newer: Ampere, Ada, Hopper), else fp16 with
Trainer's loss scaler (Turing, Volta: T4, V100, GTX 16xx, RTX 20xx, whose bf16 is emulated and slower
than fp32), else fp32 for families fp16 breaks (T5) on such cards. fp32 everywhere else: MPS has no
reliable fp16/bf16 training, and a CPU without bf16 instructions (like this project's AVX2 machines)
runs bf16 ~30x slower than fp32. `torch.cuda.is_bf16_supported()` alone is true through emulation on
pre-Ampere cards, which is why the capability is read instead.

On capable CUDA cards the half precision also holds the frozen weights (`frozen_base_dtype`) and
answers questions (`answer_dtype`); on CPU and MPS both stay fp32.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass

import torch

from loraqa import families
from loraqa.allocator import active_allocator
from loraqa.errors import ConfigError, DeviceError

# bf16 tensor cores arrive with Ampere (8.0); older cards emulate bf16 in fp32 units.
NATIVE_BF16_CAPABILITY = (8, 0)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def cuda_capability() -> tuple[int, int]:
    """This process's GPU's compute capability (cuda:LOCAL_RANK under torchrun)."""
    return tuple(torch.cuda.get_device_capability(int(os.environ.get("LOCAL_RANK", "0"))))


def mps_has_bf16() -> bool:
    """Whether MPS runs bf16: macOS 14 (Sonoma) and newer; older ones fail inside the first matmul."""
    check = getattr(torch.backends.mps, "is_macos_or_newer", None)
    return bool(check and check(14, 0))


def resolve_precision(requested: str, device: str, model_type: str, capability: tuple[int, int] | None = None) -> str:
    """The precision a run trains in. `capability`: the CUDA card's (read from the card when None)."""
    if requested == "fp16" and families.fp16_unsafe(model_type):
        raise ConfigError("training.precision", f"fp16 makes {model_type} losses NaN; use bf16 (Ampere+ GPUs) or fp32")
    if requested == "fp16" and device != "cuda":
        raise ConfigError("training.precision", f"fp16 mixed precision needs a CUDA GPU, not {device}")
    if device == "cuda" and capability is None:
        capability = cuda_capability()
    native_bf16 = device == "cuda" and tuple(capability) >= NATIVE_BF16_CAPABILITY
    if requested == "bf16" and device == "cuda" and not native_bf16:
        major, minor = capability
        raise ConfigError(
            "training.precision",
            f"this GPU (compute capability {major}.{minor}) only emulates bf16, slower than fp32; "
            "use fp16 (not for T5) or fp32",
        )
    if requested == "bf16" and device == "mps" and not mps_has_bf16():
        raise ConfigError("training.precision", "bf16 on Apple MPS needs macOS 14 or newer; use fp32")
    if requested != "auto":
        return requested
    if native_bf16:
        return "bf16"
    if device == "cuda" and not families.fp16_unsafe(model_type):
        return "fp16"  # with Trainer's loss scaler
    return "fp32"


def frozen_base_dtype(plan: DevicePlan, plain_lora: bool) -> torch.dtype:
    """The dtype the frozen base weights are held in while training.

    Half (the plan's bf16/fp16) on CUDA: half the weight memory and no per-matmul cast of every frozen
    weight under autocast; trainable weights stay fp32 (`lora.adapter.keep_trainable_fp32`), so updates
    are exact. fp32 elsewhere, and whenever training touches more than LoRA matrices and heads
    (`plain_lora` False: added tokens, DoRA, PiSSA/OLoRA moving base weights, trained biases, a
    quantized base), whose base-dtype arithmetic peft keeps in the base's precision.
    """
    if plan.device == "cuda" and plain_lora and plan.precision != "fp32":
        return DTYPES[plan.precision]
    return torch.float32


def answer_dtype(plan: DevicePlan) -> torch.dtype:
    """The dtype evaluation, predict and serve answer in: the plan's half precision on CUDA (its
    fastest; the precision was chosen for this card and family), fp32 on CPU and MPS."""
    return DTYPES[plan.precision] if plan.device == "cuda" else torch.float32


def autocast_for(model) -> contextlib.AbstractContextManager:
    """Autocast to the half dtype of a model whose frozen weights are half and trainable ones fp32 (the
    training model, answering validation or test questions outside Trainer's autocast), so the two meet;
    a no-op for a model of one dtype (every model loaded to answer)."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    half = dtypes & {torch.bfloat16, torch.float16}
    if not half or dtypes <= half:
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=half.pop())


def release_device_memory() -> None:
    """Free what a finished run left: collect its reference cycles (transformers models, peft hooks) now,
    and hand CUDA's cached blocks back, so the next run in the process starts where this one did."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def use_tf32() -> None:
    """TF32 tensor cores for whatever still runs in fp32 (Ampere and newer): a 10-bit mantissa, which
    fine-tuning tolerates, at near-bf16 speed. torch >= 2.9 spells it `fp32_precision`; the older
    `allow_tf32` flags are deprecated there."""
    matmul = torch.backends.cuda.matmul
    try:
        matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    except AttributeError:
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True


def plan_device(requested_device: str, requested_precision: str, model_type: str) -> DevicePlan:
    device = resolve_device(requested_device)
    if device == "cuda":
        index = int(os.environ.get("LOCAL_RANK", "0"))  # this process's GPU under torchrun
        if index >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK is {index} but only {torch.cuda.device_count()} CUDA devices are visible")
    precision = resolve_precision(requested_precision, device, model_type)
    if device == "cuda":
        name = f"{index}: {torch.cuda.get_device_name(index)}"
        if cuda_capability() >= NATIVE_BF16_CAPABILITY:
            use_tf32()
        description = f"cuda ({name})"
    elif device == "mps":
        description = "mps (Apple GPU)"
    else:
        description = f"cpu ({torch.get_num_threads()} threads, {active_allocator()} allocator)"
    return DevicePlan(device, precision, f"{description}, {precision}")
