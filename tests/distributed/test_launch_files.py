"""The launcher side: shipped accelerate configs parse and say what they are, scripts/gpu-check.sh is
valid bash, and its Python half runs end to end on the CPU (--dry-run)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = ROOT / "configs" / "accelerate"


@pytest.mark.parametrize(
    "name, kind",
    [("ddp-multi-gpu", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed-zero2", "DEEPSPEED"), ("cpu-ddp-2", "MULTI_GPU")],
)
def test_accelerate_configs_parse_and_start_with_their_command(name, kind):
    path = ACCELERATE / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["distributed_type"] == kind
    assert config["mixed_precision"] == "no"  # loraqa's training.precision decides
    assert (
        "accelerate launch --config_file configs/accelerate/"
        in path.read_text().splitlines()[0 if kind != "DEEPSPEED" else 1]
    )
    assert f"`{name}.yaml`" in (ROOT / "docs" / "scaling.md").read_text()


def test_gpu_check_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu-check.sh")]).returncode == 0


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for the commit field")
def test_gpu_check_dry_run_on_cpu_writes_its_results(tmp_path):
    out = tmp_path / "gpu-check.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--dry-run",
                           "--models", "minilm-l6", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=540)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    [row] = result["models"]
    assert row["model"] == "minilm-l6" and row["examples_per_second"] > 0 and row["tokens_per_second"] > 0
    assert row["cpu_agreement"] == 1.0  # the same fp32 CPU model, evaluated twice
    assert len(result["commit"]) == 40 and result["git_commit"] == result["commit"]  # bench/record.py stamp
    assert result["schema_version"] == 2 and "gpu_check.py" in result["command"]
    # The QLoRA step's CPU stand-in: 4bit refused with one line, then train -> merge -> the merged
    # model answers as the unmerged adapter does.
    [qlora] = result["qlora"]
    assert qlora["model"] == "minilm-l6" and qlora["quantize_base"] == "none" and qlora["cpu_refuses_4bit"] is True
    assert qlora["questions"] == 4 and qlora["merged_agreement"] == 1.0 and qlora["ok"] is True
