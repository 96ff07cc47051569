"""The trainable parameters' share has one unit everywhere, named in its key: `trainable_percent`
(0.73 means 0.73%) in summary.json, compare's rows, the trackers and `/v1/adapters`."""

from __future__ import annotations

import pytest

from loraqa.runs.summary import RunSummary
from loraqa.training.tracking import run_metrics


def test_old_summaries_trainable_share_reads_as_trainable_percent():
    old = RunSummary.from_dict({"model": "m", "trainable_share": 0.7331})  # older versions wrote the percentage so
    assert old.trainable_percent == 0.7331 and "trainable_share" not in old.extra
    assert old.to_dict()["trainable_percent"] == 0.7331 and "trainable_share" not in old.to_dict()
    both = RunSummary.from_dict({"trainable_share": 9.0, "trainable_percent": 0.5})  # the new key wins
    assert both.trainable_percent == 0.5


def test_trackers_log_the_percentage():
    metrics = run_metrics(RunSummary(), (25, 1000), None)
    assert metrics["run/trainable_percent"] == pytest.approx(2.5)
    assert not any("share" in key for key in metrics)
