"""What a sweep found: configurations ranked on validation, with seed spread and test metrics beside.

Reads only the study's trials (their user attrs hold each run's validation and test metrics, its
run directory and the `loraqa train` command that reproduces it). The best configuration is chosen on the mean validation metric over its seeds,
never on the test set; its test metrics are reported next to it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import optuna
from optuna.trial import TrialState

from loraqa.sweeps.study import CELL_ATTR


def summarize(study: optuna.Study, metric: str, maximize: bool) -> dict:
    trials = study.get_trials(deepcopy=False)
    finished_cells = {
        t.user_attrs.get(CELL_ATTR) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    by_config: dict[str, list] = defaultdict(list)
    for t in trials:
        if t.state == TrialState.COMPLETE:
            by_config[t.user_attrs["config"]].append(t)
    configurations = [_configuration(key, group, metric, maximize) for key, group in by_config.items()]
    configurations.sort(key=lambda c: c["validation_mean"], reverse=maximize)
    states = defaultdict(int)
    for t in trials:
        states[t.state.name] += 1
    failed = [
        {"trial": t.number, "cell": t.user_attrs.get(CELL_ATTR), "error": t.user_attrs.get("error", "worker lost (heartbeat)"),
         "retried": t.user_attrs.get(CELL_ATTR) in finished_cells}
        for t in trials if t.state == TrialState.FAIL
    ]  # fmt: skip
    pruned = [{"trial": t.number, "cell": t.user_attrs.get(CELL_ATTR), "step": t.user_attrs.get("pruned_at_step")}
              for t in trials if t.state == TrialState.PRUNED]  # fmt: skip
    return {
        "study": study.study_name,
        "metric": f"validation {metric}",
        "direction": "maximize" if maximize else "minimize",
        "trials": dict(states),
        "best": configurations[0] if configurations else None,
        "configurations": configurations,
        "failed": failed,
        "pruned": pruned,
    }


def _configuration(key: str, group: list, metric: str, maximize: bool) -> dict:
    values = [t.value for t in group]
    best_seed = max(group, key=lambda t: t.value) if maximize else min(group, key=lambda t: t.value)
    test = [t.user_attrs.get("test") or {} for t in group]
    return {
        "config": key,
        "seeds": [t.user_attrs.get("seed") for t in group],
        "validation_mean": statistics.fmean(values),
        "validation_std": statistics.stdev(values) if len(values) > 1 else 0.0,  # sample std over seeds
        "validation_range": max(values) - min(values),
        "validation_values": values,
        "test_f1_mean": _mean([m.get("f1") for m in test]),
        "test_exact_match_mean": _mean([m.get("exact_match") for m in test]),
        "test": [t.user_attrs.get("test") for t in group],
        "best_run_dir": best_seed.user_attrs.get("run_dir"),
        "command": best_seed.user_attrs.get("command"),  # `loraqa train ...` retraining the best seed's run
        "run_dirs": [t.user_attrs.get("run_dir") for t in group],
    }


def _mean(values: list) -> float | None:
    present = [v for v in values if isinstance(v, (int, float))]
    return statistics.fmean(present) if present else None


def format_summary(summary: dict, top: int = 10) -> str:
    metric = summary["metric"]
    lines = [
        f"sweep {summary['study']}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["trials"].items()))
    ]
    lines.append(f"{'configuration':<60} {'seeds':>5} {metric + ' mean':>22} {'std':>7} {'range':>7} {'test f1':>8}")
    for c in summary["configurations"][:top]:
        test_f1 = f"{c['test_f1_mean']:.2f}" if c["test_f1_mean"] is not None else "-"
        lines.append(f"{c['config'][:60]:<60} {len(c['seeds']):>5} {c['validation_mean']:>22.3f} "
                     f"{c['validation_std']:>7.3f} {c['validation_range']:>7.3f} {test_f1:>8}")  # fmt: skip
    for f in summary["failed"]:
        if not f["retried"]:
            lines.append(f"failed: {f['cell']}: {f['error']}")
    for p in summary["pruned"]:
        lines.append(f"pruned: {p['cell']} at step {p['step']}")
    best = summary["best"]
    if best:
        lines.append(f"best on {metric}: {best['config']} ({best['validation_mean']:.3f} over {len(best['seeds'])} "
                     f"seed(s), std {best['validation_std']:.3f}); its test f1 {best['test_f1_mean']}")  # fmt: skip
        lines.append(f"best run directory: {best['best_run_dir']}  "
                     f"(loraqa predict --adapter {best['best_run_dir']}/adapter ...)")  # fmt: skip
        if best.get("command"):
            lines.append(f"reproduce it as an ordinary run: {best['command']}")
    return "\n".join(lines)
