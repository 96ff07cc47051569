"""The pipeline phases are the one way to train: nothing but the fit phase builds a QATrainer, and a
run's summary records what reports read (provenance, parameters, adapter size, phase times)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from run_helpers import tiny_config

from loraqa.pipeline import run_training

ROOT = Path(__file__).resolve().parents[2]
FIT_PHASE = ROOT / "src" / "loraqa" / "pipeline" / "fit_phase.py"


def test_only_the_fit_phase_constructs_a_qatrainer():
    constructing = re.compile(r"\bQATrainer\s*\(")
    found = sorted(
        str(path.relative_to(ROOT))
        for folder in ("src", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if path != FIT_PHASE
        and any(
            constructing.search(line) and not line.lstrip().startswith("class ")
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    )
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
    assert abs(saved["trainable_percent"] - 100 * saved["trainable_params"] / saved["total_params"]) < 1e-3
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
        summary = run_training(
            tiny_config(
                tiny_model_dir("bert"),
                qa_files,
                tmp_path / "run",
                f"training.torch_threads={wanted}",
                "evaluation.baseline=false",
            )
        )
    finally:
        torch.set_num_threads(before)
    if summary["device"].startswith("cpu"):
        assert summary["device"].startswith(f"cpu ({wanted} threads,"), summary["device"]


@pytest.mark.parametrize(
    "family, extra",
    [
        ("bert", ()),  # a QA head and the inert segment embeddings as modules_to_save
        ("gpt2", ("model.add_tokens=[<ans>]", "lora.lora_dropout=0.1")),  # trainable token rows, dropout
        ("t5", ("generation.decoding=topk5",)),  # a baseline that draws random numbers
    ],
)
def test_the_baseline_leaves_what_training_sees_as_it_was(family, extra, tiny_model_dir, qa_files, tmp_path):
    """A resumed run reads its baseline from disk instead of measuring it, so measuring it must leave
    the trainable parameters (which, in what order, their values) and every random state as they were:
    peft's disable_adapter made the frozen segment-embedding copy trainable, so BERT's run trained one
    parameter more than its --resume, whose optimizer state then failed to load."""
    import random

    import numpy as np
    import torch
    from run_helpers import tiny_overrides

    from loraqa.config.loader import load_config
    from loraqa.pipeline import baseline, prepare

    prepared = prepare(load_config(None, tiny_overrides(tiny_model_dir(family), qa_files, tmp_path / "run", *extra)))
    try:

        def seen_by_training():
            trainable = [(n, p.detach().clone()) for n, p in prepared.peft_model.named_parameters() if p.requires_grad]
            return trainable, random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()

        before = seen_by_training()
        assert baseline(prepared) is not None
        after = seen_by_training()
    finally:
        prepared.run.release()
    assert [name for name, _ in after[0]] == [name for name, _ in before[0]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(after[0], before[0], strict=True))
    assert after[1] == before[1] and np.array_equal(after[2], before[2]) and torch.equal(after[3], before[3])
