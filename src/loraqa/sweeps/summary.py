"""What a sweep found: configurations ranked on validation, with seed spread and test metrics beside.

Reads only the study's trials (their user attrs hold each run's validation and test metrics, its
run directory and the `loraqa train` command that reproduces it). The best configuration is chosen on the mean validation metric over its seeds,
never on the test set; its test metrics are reported next to it.
"""

from __future__ import annotations

from collections import defaultdict

import optuna
from optuna.trial import TrialState

from loraqa.runs import leaderboard
from loraqa.sweeps.study import CELL_ATTR


def summarize(study: optuna.Study, metric: str, maximize: bool, select_rule: str = "best") -> dict:
    trials = study.get_trials(deepcopy=False)
    finished_cells = {
        t.user_attrs.get(CELL_ATTR) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    entries = [_entry(t, metric) for t in trials if t.state == TrialState.COMPLETE]
    rows = leaderboard.rank(entries, maximize)
    configurations = [_configuration(row) for row in rows]
    chosen, reason = leaderboard.select(rows, select_rule, maximize)
    states = defaultdict(int)
    for t in trials:
        states[t.state.name] += 1
    failed = [
        {
            "trial": t.number,
            "cell": t.user_attrs.get(CELL_ATTR),
            "error": t.user_attrs.get("error", "worker lost (heartbeat)"),
            "retried": t.user_attrs.get(CELL_ATTR) in finished_cells,
        }
        for t in trials
        if t.state == TrialState.FAIL
    ]
    pruned = [
        {"trial": t.number, "cell": t.user_attrs.get(CELL_ATTR), "step": t.user_attrs.get("pruned_at_step")}
        for t in trials
        if t.state == TrialState.PRUNED
    ]
    return {
        "study": study.study_name,
        "metric": f"validation {metric}",
        "direction": "maximize" if maximize else "minimize",
        "trials": dict(states),
        "selection": {"rule": select_rule, "reason": reason},
        "best": configurations[rows.index(chosen)] if chosen else None,
        "configurations": configurations,
        "failed": failed,
        "pruned": pruned,
    }


def _entry(trial, metric: str) -> leaderboard.Entry:
    validation = trial.user_attrs.get("validation") or {}
    return leaderboard.Entry(
        config=trial.user_attrs["config"],
        value=trial.value,
        interval=validation.get(f"{metric}_ci"),
        trainable_params=trial.user_attrs.get("trainable_params"),
        test=trial.user_attrs.get("test") or {},
        item=trial,
    )


def _configuration(row: dict) -> dict:
    group, best_seed = row["items"], row["best"]
    return {
        "config": row["config"],
        "seeds": [t.user_attrs.get("seed") for t in group],
        "validation_mean": row["mean"],
        "validation_std": row["std"],  # sample std over seeds
        "validation_standard_error": row["standard_error"],  # seeds and validation questions (runs/leaderboard.py)
        "validation_range": row["range"],
        "validation_values": row["values"],
        "trainable_params": row["trainable_params"],
        "test_f1_mean": row["test_f1"],
        "test_exact_match_mean": row["test_exact_match"],
        "test": [t.user_attrs.get("test") for t in group],
        "best_run_dir": best_seed.user_attrs.get("run_dir"),
        "command": best_seed.user_attrs.get("command"),  # `loraqa train ...` retraining the best seed's run
        "run_dirs": [t.user_attrs.get("run_dir") for t in group],
    }


def format_summary(summary: dict, top: int = 10) -> str:
    metric = summary["metric"]
    lines = [
        f"sweep {summary['study']}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["trials"].items()))
    ]
    lines.append(
        f"{'configuration':<60} {'seeds':>5} {metric + ' mean':>22} {'s.e.':>7} {'std':>7} {'range':>7} {'test f1':>8}"
    )
    for c in summary["configurations"][:top]:
        test_f1 = f"{c['test_f1_mean']:.2f}" if c["test_f1_mean"] is not None else "-"
        lines.append(
            f"{c['config'][:60]:<60} {len(c['seeds']):>5} {c['validation_mean']:>22.3f} "
            f"{c['validation_standard_error']:>7.3f} {c['validation_std']:>7.3f} {c['validation_range']:>7.3f} "
            f"{test_f1:>8}"
        )
    for f in summary["failed"]:
        if not f["retried"]:
            lines.append(f"failed: {f['cell']}: {f['error']}")
    for p in summary["pruned"]:
        lines.append(f"pruned: {p['cell']} at step {p['step']}")
    best = summary["best"]
    if best:
        lines.append(f"chosen by --select {summary['selection']['rule']}: {summary['selection']['reason']}")
        lines.append(
            f"best on {metric}: {best['config']} ({best['validation_mean']:.3f} over {len(best['seeds'])} "
            f"seed(s), std {best['validation_std']:.3f}); its test f1 {best['test_f1_mean']}"
        )
        lines.append(
            f"best run directory: {best['best_run_dir']}  (loraqa predict --adapter {best['best_run_dir']}/adapter ...)"
        )
        if best.get("command"):
            lines.append(f"reproduce it as an ordinary run: {best['command']}")
    return "\n".join(lines)
