"""A sweep measures the baseline once: trials whose model, data, evaluation and seed agree reuse
the first trial's `baseline/` instead of evaluating the base model again."""

from __future__ import annotations

import json

from sweep_helpers import cheap_overrides, sweep_command

from loraqa.cli import main
from loraqa.config.loader import load_config
from loraqa.runs.files import TRIAL_FILE
from loraqa.runs.summary import read_summary
from loraqa.sweeps.trial import baseline_view


def test_trials_reuse_the_first_measured_baseline(tiny_model_dir, qa_files, tmp_path):
    sweep_dir = tmp_path / "sweep"
    overrides = cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path, "evaluation.baseline=true")
    grid = ["--grid", "lora.r=2,4", "training.learning_rate=1e-3,1e-2"]
    assert main(sweep_command(overrides, sweep_dir, "base", *grid)) == 0
    trials = sorted(sweep_dir.glob(f"*/{TRIAL_FILE}"))
    records = [json.loads(path.read_text()) for path in trials]
    assert len(records) == 4 and all(r["state"] == "COMPLETE" for r in records)
    measured = [path.parent for path, r in zip(trials, records, strict=True) if "baseline_from" not in r]
    assert len(measured) == 1  # once per sweep
    first = read_summary(measured[0]).baseline
    for path, record in zip(trials, records, strict=True):
        summary = read_summary(path.parent)
        assert summary.baseline == first and summary.adapter_vs_baseline is not None
        if path.parent != measured[0]:
            donor = record["baseline_from"]  # the first trial's, or a trial's that reused it
            assert donor.startswith(str(sweep_dir)) and donor.endswith("/baseline")
            assert (path.parent / "baseline" / "metrics.json").read_text() == (
                measured[0] / "baseline" / "metrics.json"
            ).read_text()


def test_baseline_view_tells_apart_what_changes_the_baseline():
    base = baseline_view(load_config(None, []))
    assert baseline_view(load_config(None, ["lora.r=64", "training.learning_rate=1e-2", "name=x"])) == base
    for changed in ("training.seed=7", "model.max_seq_length=256", "data.test_samples=5", "lora.init=olora"):
        assert baseline_view(load_config(None, [changed])) != base, changed
