"""The sweep leaderboard (runs/leaderboard.py): ranking, standard errors and the selection rules."""

from __future__ import annotations

import math

import pytest

from loraqa.runs.leaderboard import Entry, rank, select


def _entry(config: str, value: float, params: int, half_width: float | None = None) -> Entry:
    interval = None if half_width is None else {"low": value - half_width, "high": value + half_width}
    return Entry(config, value, interval, params, {"f1": value - 5}, item=(config, value))


def test_seeds_pool_and_the_standard_error_counts_seeds_and_questions():
    rows = rank([_entry("r=16", 60.0, 1600, 3.92), _entry("r=16", 62.0, 1600, 3.92), _entry("r=4", 50.0, 400)], True)
    top = rows[0]
    assert [r["config"] for r in rows] == ["r=16", "r=4"] and top["mean"] == 61.0
    # seeds: std sqrt(2) over 2 -> variance 1; questions: (3.92 / 1.96)^2 = 4 per trial, mean 4 over 2 seeds -> 2
    assert top["standard_error"] == pytest.approx(math.sqrt(1 + 4 / 2), rel=1e-4)
    assert rows[1]["standard_error"] == 0.0  # one seed, no interval: nothing known
    assert top["best"] == ("r=16", 62.0) and top["test_f1"] == 56.0


def test_best_takes_the_top_mean_and_one_se_the_smallest_within_one_standard_error():
    rows = rank(
        [_entry("r=16", 61.0, 1600, 3.92), _entry("r=4", 59.5, 400, 3.92), _entry("r=2", 50.0, 200, 3.92)], True
    )
    best, why = select(rows, "best", True)
    assert best["config"] == "r=16" and "best mean" in why
    smaller, why = select(rows, "one-se", True)
    assert smaller["config"] == "r=4"  # 59.5 >= 61 - 2: within one standard error, 4x fewer parameters
    assert "within one standard error" in why and "400" in why
    # A loss: lower is better, and the bound runs the other way.
    losses = rank([_entry("a", 1.0, 100, 0.196), _entry("b", 1.05, 10, 0.196), _entry("c", 1.5, 1, 0.196)], False)
    assert select(losses, "one-se", False)[0]["config"] == "b"


def test_no_rows_and_unknown_rules():
    assert select([], "one-se", True) == (None, "no configuration completed")
    with pytest.raises(ValueError, match="unknown selection rule"):
        select(rank([_entry("a", 1.0, 1)], True), "median", True)
