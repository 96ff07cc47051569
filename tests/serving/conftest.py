"""Tiny trained adapters of each formulation, and registries serving them, shared by the serving tests."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from run_helpers import tiny_overrides  # noqa: E402

from loraqa.cli import main  # noqa: E402
from loraqa.config.loader import load_config  # noqa: E402

FAMILIES = {"extractive": "bert", "seq2seq": "t5", "causal": "gpt2"}


@pytest.fixture(scope="session")
def trained_adapters(tiny_model_dir, qa_files, tmp_path_factory) -> dict[str, str]:
    """formulation (and 'extractive2', a second adapter on the same bert base) -> adapter directory."""
    root = tmp_path_factory.mktemp("serving-runs")
    adapters = {}
    runs = {**FAMILIES, "extractive2": "bert"}
    for name, family in runs.items():
        seed = "training.seed=7" if name == "extractive2" else "training.seed=42"
        out = root / name
        args = tiny_overrides(tiny_model_dir(family), qa_files, out, "evaluation.baseline=false", seed)
        assert main(["train", *args]) == 0
        adapters[name] = str(out / "adapter")
    return adapters


@pytest.fixture(scope="session")
def serve_config():
    # 256: the tiny models' positions (a base answered alone is held to them, like any base)
    return load_config(
        None,
        ["training.device=cpu", "generation.max_new_tokens=4", "evaluation.batch_size=4", "model.max_seq_length=256"],
    )
