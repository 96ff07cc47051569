"""The two offline models, trained for a few steps through the real pipeline (integration)."""

from __future__ import annotations

import json

import pytest

from loraqa.config.loader import load_config
from loraqa.pipeline import run_training


def _config(tmp_path, qa_files, *extra):
    return load_config(
        None,
        [
            f"data.train={qa_files['train']}",
            f"data.test={qa_files['test']}",
            "data.validation_samples=4",
            "training.max_steps=2",
            "training.per_device_train_batch_size=2",
            "training.device=cpu",
            "evaluation.batch_size=8",
            f"output_dir={tmp_path / 'run'}",
            *extra,
        ],
    )


@pytest.mark.integration
def test_minilm_l6_extractive_few_steps(tmp_path, qa_files):
    summary = run_training(
        _config(
            tmp_path,
            qa_files,
            "model.name=minilm-l6",
            "model.max_seq_length=128",
            "model.doc_stride=64",
            "lora.target_modules=attention_mlp",
        )
    )
    meta = json.loads((tmp_path / "run" / "adapter" / "loraqa.json").read_text())
    assert meta["formulation"] == "extractive" and meta["model_type"] == "bert"
    assert summary["adapter"]["count"] == 8 and "start_accuracy" in summary["adapter"]


@pytest.mark.integration
def test_smollm2_135m_causal_few_steps(tmp_path, qa_files):
    summary = run_training(
        _config(
            tmp_path,
            qa_files,
            "model.name=smollm2-135m",
            "model.max_seq_length=160",
            "generation.max_new_tokens=8",
            "evaluation.baseline=false",
        )
    )
    meta = json.loads((tmp_path / "run" / "adapter" / "loraqa.json").read_text())
    assert meta["formulation"] == "causal" and meta["model_type"] == "llama"
    assert meta["vocab_size"] == 49152
    assert summary["adapter"]["count"] == 8 and "token_accuracy" in summary["adapter"]
