"""The pipeline phases are the one way to train: nothing but the fit phase builds a QATrainer, and a
run's summary records what reports read (provenance, parameters, adapter size, phase times)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from loraqa.pipeline import run_training
from run_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]
FIT_PHASE = ROOT / "src" / "loraqa" / "pipeline" / "fit_phase.py"


def test_only_the_fit_phase_constructs_a_qatrainer():
    constructing = re.compile(r"\bQATrainer\s*\(")
    found = sorted(
        str(path.relative_to(ROOT))
        for folder in ("src", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if path != FIT_PHASE and any(
            constructing.search(line) and not line.lstrip().startswith("class ")
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    )  # fmt: skip
    assert found == [], f"QATrainer built outside the fit phase: {found}"
    assert constructing.search(FIT_PHASE.read_text(encoding="utf-8"))  # the scan itself sees the real one


def test_the_summary_records_what_the_report_reads(tiny_model_dir, qa_files, tmp_path):
    run = tmp_path / "run"
    summary = run_training(
        tiny_config(tiny_model_dir("gpt2"), qa_files, run), validation=True, command=["loraqa", "train"]
    )
    saved = json.loads((run / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert 0 < saved["trainable_params"] < saved["total_params"]
    assert abs(saved["trainable_share"] - 100 * saved["trainable_params"] / saved["total_params"]) < 1e-3
    assert set(saved["versions"]) == {"loraqa", "torch", "transformers", "peft"} and saved["versions"]["torch"]
    assert saved["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", saved["git_commit"])
    assert saved["command"] == ["loraqa", "train"]
    on_disk = sum(p.stat().st_size for p in (run / "adapter").rglob("*") if p.is_file())
    assert saved["adapter_bytes"] == on_disk > 0
    assert list(saved["phase_seconds"]) == ["prepare", "baseline", "fit", "save", "evaluate"]
    assert saved["validation"]["count"] == saved["questions"]["validation"]["count"] > 0  # carved on request
    assert saved["formulation"] == "causal"


def test_the_recorded_cpu_description_counts_the_threads_the_run_used(tiny_model_dir, qa_files, tmp_path):
    import torch

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    try:
        summary = run_training(tiny_config(tiny_model_dir("bert"), qa_files, tmp_path / "run",
                                           f"training.torch_threads={wanted}", "evaluation.baseline=false"))  # fmt: skip
    finally:
        torch.set_num_threads(before)
    if summary["device"].startswith("cpu"):
        assert summary["device"].startswith(f"cpu ({wanted} threads,"), summary["device"]
