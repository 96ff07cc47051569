"""A new user's first mistakes, end to end as real processes: each is one line, exit status 2, and
is reported before torch or transformers is imported (python -X importtime lists every import the
process made, so a module missing from it was never loaded)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

HEAVY = ("torch", "transformers", "peft")


def run_loraqa(*argv: str, cwd, env=None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "loraqa", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    return result, time.perf_counter() - started


def imported(stderr: str) -> set[str]:
    """The modules `-X importtime` says the process imported."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def said(stderr: str) -> list[str]:
    """What loraqa wrote on stderr, without the importtime lines."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:") and line.strip()]


def assert_one_line_before_torch(result: subprocess.CompletedProcess) -> str:
    lines = said(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("loraqa: error: "), lines
    modules = imported(result.stderr)
    assert "loraqa.cli_checks" in modules  # the listing is real: loraqa's own modules are in it
    # one interpreter start: the checks run before the restart under tcmalloc (allocator.py), not after it
    starts = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.rsplit("|", 1)[1].strip() == "loraqa.cli_checks"
    ]
    assert len(starts) == 1, starts
    assert not [name for name in modules if name.split(".")[0] in HEAVY], sorted(modules)[:20]
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "minilm-l6-squad", "training.learning_rat=1e-4"], "did you mean 'training.learning_rate'?"),
        (["train", "minilm-l6-squad", "training.lora_alpha=8"], "did you mean 'lora.lora_alpha'?"),
        (["train", "minilm-l6-squad", "training.precision=bf61"], "did you mean 'bf16'?"),
        (["train", "minilm-l6-squad", "training.lr_scheduler_type=cosin"], "did you mean 'cosine'?"),
        (["train", "minilm-l6-squa"], "did you mean 'minilm-l6-squad'?"),
        (
            ["train", "minilm-l6-squad", "model.formulation=extractive", "model.doc_stride=300"],
            "'model.doc_stride': must be smaller than model.max_seq_length (256)",
        ),
        (["train", "minilm-l6-squad", "data.train=missing.jsonl"], "missing.jsonl: file not found"),
        (["predict", "--question", "Who?"], "--question needs --context"),
        (["compare", "minilm-l6-squad", "gpt2-squad", "--name", "x", "lora.rr=4"], "did you mean 'lora.r'?"),
        (
            ["sweep", "minilm-l6-squad", "--name", "x", "--grid", "training.learning_rate=1e-4,abc"],
            "expected a number, got 'abc' (in the sweep's trials with training.learning_rate=abc)",
        ),
        (["sweep", "minilm-l6-squad", "--name", "x", "--grid", "lora.r=4,-3"], "the rank must be at least 1, got -3"),
        (
            ["sweep", "minilm-l6-squad", "--name", "x", "--grid", "training.learning_rat=1e-4"],
            "did you mean 'training.learning_rate'?",
        ),
        (["sweep", "minilm-l6-squad", "--name", "x", "--metric", "f2", "--grid", "lora.r=4"], "--metric: must be one"),
    ],
)
def test_config_mistakes_are_one_line_before_torch(argv, expected, tmp_path):
    result, seconds = run_loraqa(*argv, cwd=tmp_path)
    assert expected in assert_one_line_before_torch(result)
    print(f"{' '.join(argv)}: {seconds:.2f} s")


def test_output_conflicts_are_refused_before_torch(tmp_path):
    run = tmp_path / "runs" / "taken"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: taken\n")
    result, _ = run_loraqa("train", "minilm-l6-squad", "name=taken", cwd=tmp_path)
    assert "already holds a run" in assert_one_line_before_torch(result)
    result, _ = run_loraqa("merge", "--adapter", str(run), "--output", str(run), cwd=tmp_path)
    assert "is not empty; use --overwrite" in assert_one_line_before_torch(result)


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once, like a blocked network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(tmp_path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(name, None)
    return {**env, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf-home")}


@pytest.mark.parametrize("name", ["minilm-l7", "gpt2"])
def test_unreachable_hub_is_one_line_naming_offline_models(name, tmp_path):
    result, seconds = run_loraqa(
        "train", "minilm-l6-squad", f"model.name={name}", cwd=tmp_path, env=offline_env(tmp_path), timeout=60
    )
    line = assert_one_line_before_torch(result)
    assert seconds < 10, seconds
    assert "HF_HUB_OFFLINE=1" in line and "minilm-l6" in line and "unreachable" in line
    if name == "minilm-l7":
        assert "did you mean 'minilm-l6'?" in line
    else:
        assert "did you mean" not in line  # a known name is not its own suggestion
