"""A sweep's leaderboard: configurations ranked on validation, with their noise, and the rule that picks one.

One function ranks for both the sweep's own summary (`sweeps/summary.py`, from the study's trials)
and its report (`reports/sweep.py`, from the run directories), so `sweep.json` and the report can
never disagree.

Each configuration pools its seeds. Its **standard error** combines two sources of noise:
training randomness (the spread over seeds: std / sqrt(k) for k seeds) and the finite validation
questions (each trial's bootstrap interval of its metric, read back as a standard error: half
width / 1.96). With one seed only the second is known; with neither (eval_loss, ROUGE) it is 0.

Selection rules (`loraqa sweep --select`):
* `best`: the highest mean (lowest for a loss).
* `one-se`: the one-standard-error rule: among configurations whose mean is within one standard
  error of the best mean, the one with the fewest trainable parameters (ties: the better mean).
  A smaller adapter that the validation questions cannot tell from the best is the safer pick.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SELECTION_RULES = ("best", "one-se")
Z_95 = 1.959964  # a 95% interval is mean +- 1.96 standard errors


@dataclass(frozen=True)
class Entry:
    """One finished trial: its configuration (seeds pooled under one key) and what it measured."""

    config: str
    value: float  # the validation metric the sweep ranks on
    interval: dict | None  # that metric's bootstrap interval ({"low", "high"}), when it has one
    trainable_params: int | None
    test: dict  # the trial's test metrics
    item: Any  # the caller's own trial object, handed back in the rows


def rank(entries: Sequence[Entry], maximize: bool) -> list[dict]:
    """Configurations ranked on their mean value: one row each with its seeds' items and statistics."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.config, []).append(entry)
    rows = [_row(config, group, maximize) for config, group in groups.items()]
    rows.sort(key=lambda r: r["config"])  # ties keep one order whatever order the trials came in
    rows.sort(key=lambda r: r["mean"], reverse=maximize)  # stable: equal means stay in config order
    return rows


def select(rows: list[dict], rule: str, maximize: bool) -> tuple[dict | None, str]:
    """The row the rule picks from ranked `rows`, and one sentence saying why."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; one of {', '.join(SELECTION_RULES)}")
    if not rows:
        return None, "no configuration completed"
    top = rows[0]
    if rule == "best":
        return top, f"best mean validation value ({top['mean']:.4g})"
    bound = top["mean"] - top["standard_error"] if maximize else top["mean"] + top["standard_error"]
    close = [r for r in rows if (r["mean"] >= bound if maximize else r["mean"] <= bound)]
    sized = [r for r in close if r["trainable_params"] is not None]
    if not sized:
        return top, "one-se: no trainable parameter counts recorded, so the best mean"
    chosen = min(sized, key=lambda r: (r["trainable_params"], -r["mean"] if maximize else r["mean"]))
    if chosen is top:
        return top, (
            f"one-se: the best mean ({top['mean']:.4g}, standard error {top['standard_error']:.3g}) is "
            f"also the smallest of the {len(close)} configuration(s) within one standard error"
        )
    return chosen, (
        f"one-se: {chosen['mean']:.4g} is within one standard error ({top['standard_error']:.3g}) of the best mean "
        f"{top['mean']:.4g}, with {chosen['trainable_params']:,} trainable parameters against {top['trainable_params']:,}"
        if top["trainable_params"] is not None
        else f"one-se: {chosen['mean']:.4g} is within one standard error of the best mean with the fewest parameters"
    )


def _row(config: str, group: list[Entry], maximize: bool) -> dict:
    values = [e.value for e in group]
    k = len(values)
    std = statistics.stdev(values) if k > 1 else 0.0  # sample std over seeds
    question_errors = [_question_se(e.interval) for e in group]
    question_variances = [se**2 for se in question_errors if se is not None]
    question_term = statistics.fmean(question_variances) / k if question_variances else 0.0
    best = max(group, key=lambda e: e.value) if maximize else min(group, key=lambda e: e.value)
    counts = [e.trainable_params for e in group if isinstance(e.trainable_params, int)]
    return {
        "config": config,
        "items": [e.item for e in group],
        "values": values,
        "mean": statistics.fmean(values),
        "std": std,
        "range": max(values) - min(values),
        "standard_error": math.sqrt(std**2 / k + question_term),
        "trainable_params": min(counts) if counts else None,
        "test_f1": _mean([e.test.get("f1") for e in group]),
        "test_exact_match": _mean([e.test.get("exact_match") for e in group]),
        "best": best.item,
    }


def _question_se(interval: dict | None) -> float | None:
    if not isinstance(interval, dict):
        return None
    low, high = interval.get("low"), interval.get("high")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return None
    return (high - low) / (2 * Z_95)


def _mean(values: list) -> float | None:
    present = [v for v in values if isinstance(v, (int, float))]
    return statistics.fmean(present) if present else None
