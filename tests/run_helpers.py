"""Building small run configs for tests (real pipeline, tiny models, a few steps)."""

from __future__ import annotations

import os
from pathlib import Path

from loraqa.config.loader import load_config


def tiny_overrides(model_dir: Path, files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        f"model.name={model_dir}",
        f"data.train={files['train']}",
        f"data.test={files['test']}",
        "data.validation_samples=4",
        "lora.allow_large_trainable_share=true",  # tiny models: LoRA is a large share of few weights
        "training.max_steps=3",
        "training.per_device_train_batch_size=4",
        "training.learning_rate=1e-2",
        # scripts/gpu-check.sh sets cuda: the same tiny runs then train on the GPU
        f"training.device={os.environ.get('LORAQA_TEST_DEVICE', 'cpu')}",
        "training.logging_steps=1",
        "model.max_seq_length=64",
        "model.doc_stride=16",
        "generation.max_new_tokens=4",
        "evaluation.batch_size=4",
        f"output_dir={out}",
        *extra,
    ]


# Learning rates at which 12 steps make a tiny family's answers depend on its adapter (extractive: 3e-2).
ADAPTER_DEPENDENT_RATES = {"t5": 0.2, "gpt2": 0.1, "llama": 0.1}


def adapter_dependent_overrides(family: str) -> list[str]:
    """A tiny training whose answers depend on the adapter, every context in one window or prompt: what
    tests comparing loraqa's answers with another runtime's (plain peft, ONNX Runtime) train."""
    return [
        "evaluation.baseline=false",
        "training.max_steps=12",
        f"training.learning_rate={ADAPTER_DEPENDENT_RATES.get(family, 3e-2)}",
        "model.max_seq_length=256",
        "model.doc_stride=64",
    ]


def tiny_config(model_dir: Path, files: dict[str, Path], out: Path, *extra: str):
    return load_config(None, tiny_overrides(model_dir, files, out, *extra))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """The `loraqa` command in-process: exit status, stdout, stderr."""
    from loraqa.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The one `loraqa: error:` line of `err`, asserting there is exactly one and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("loraqa: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def block_network(monkeypatch) -> list:
    """Refuse every outgoing connection and name lookup of this process, recording each in the list
    returned: a test promising "no network" asserts it stays empty (and can see that it would not)."""
    import socket

    calls: list = []

    def refuse(what: str):
        def blocked(*args, **kwargs):
            calls.append((what, args[1:2] if what == "connect" else args[:1]))
            raise OSError("network blocked by the test")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # a library may try: the list must see it
        monkeypatch.delenv(name, raising=False)
    return calls
