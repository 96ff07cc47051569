"""The report of a sweep directory (`loraqa sweep` output): trials read from files, then its sections.

A sweep directory holds `sweep.json` (the summary `loraqa sweep` writes: metric, direction, failed
and pruned trials) and/or `study.db`, and one run directory per trial, each with
`sweep_trial.json` (the trial's cell, state, validation metric, error). Only those files are read:
no Optuna, no model. Sections: leaderboard -> heatmaps -> metric against trainable parameters ->
each hyperparameter's effect -> failed and pruned trials -> best configuration and its command.
"""

from __future__ import annotations

import json
import shlex
import statistics
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from loraqa.reports.document import Code, Figure, Paragraph, Section, Table
from loraqa.reports.provenance import recorded_command
from loraqa.reports.source import ReportSource
from loraqa.runs import leaderboard as leaderboard_rules
from loraqa.runs.files import ADAPTER_DIR, CONFIG_FILE, STUDY_FILE, SWEEP_FILE, TRIAL_FILE
from loraqa.runs.reading import read_json
from loraqa.runs.record import RunRecord

NA = "n/a"
HEATMAP_MAX_VALUES = 12  # more distinct values on an axis (a search's floats): no heatmap, the scatter shows it
PREFERRED_AXES = ("lora.r", "training.learning_rate", "lora.target_modules")  # the seed's grid: rows, columns, panels


@dataclass
class SweepTrial:
    """One trial as its files tell it; `value` is the validation metric (COMPLETE trials only rank)."""

    cell: str
    params: dict[str, str]  # config key -> value as typed on the command line
    seed: int | None
    state: str  # COMPLETE, PRUNED, FAIL, or UNFINISHED (a run without its sweep_trial.json)
    value: float | None = None
    test: dict = field(default_factory=dict)
    trainable: int | None = None
    interval: dict | None = None  # the validation metric's bootstrap interval, when it has one
    error: str | None = None
    pruned_at: int | None = None
    run: RunRecord | None = None

    @property
    def config(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params.items())


def is_sweep_directory(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file() or (path / STUDY_FILE).is_file()


def read_sweep(path: Path, runs: list[RunRecord]) -> ReportSource:
    """ReportSource(kind="sweep"): details hold the summary, metric, direction and every trial."""
    problems: list[str] = []
    summary = _json_object(path / SWEEP_FILE, problems)
    metric = str(summary.get("metric", "validation f1")).split()[-1]
    trials = [_trial_of_run(run, metric, problems) for run in runs]
    have = {t.cell for t in trials}
    for failed in summary.get("failed") or []:  # failed before it had a run directory (a bad combination)
        if isinstance(failed, dict) and failed.get("cell") and failed["cell"] not in have and not failed.get("retried"):
            trials.append(_trial_of_cell(str(failed["cell"]), "FAIL", error=str(failed.get("error", ""))))
    details = {
        "summary": summary,
        "metric": metric,
        "direction": summary.get("direction", "maximize"),
        "trials": trials,
        "problems": problems,
    }
    return ReportSource("sweep", path, runs, details)


def _trial_of_run(run: RunRecord, metric: str, problems: list[str]) -> SweepTrial:
    record = _json_object(run.path / TRIAL_FILE, problems)
    summary = run.summary
    validation = record.get("validation") or (summary.validation if summary else None) or {}
    state = record.get("state") or ("COMPLETE" if run.finished and metric in validation else "UNFINISHED")
    trial = _trial_of_cell(str(record.get("cell") or _cell_from_dirname(run.name)), state, error=record.get("error"))
    value = record.get(f"validation_{metric}", validation.get(metric))
    trial.value = float(value) if isinstance(value, (int, float)) else None
    trial.interval = validation.get(f"{metric}_ci") if isinstance(validation, dict) else None
    trial.test = (
        record.get("test") or (summary.adapter if summary else None) or (run.adapter.metrics if run.adapter else {})
    )
    trial.pruned_at = record.get("pruned_at_step")
    recorded_params = summary.trainable_params if summary else None
    trial.trainable = recorded_params or adapter_parameter_count(run.path / ADAPTER_DIR, problems)
    trial.run = run
    return trial


def _trial_of_cell(cell: str, state: str, error: str | None = None) -> SweepTrial:
    params, seed = {}, None
    for item in cell.split():
        key, _, value = item.partition("=")
        if key == "seed":
            seed = int(value) if value.isdigit() else None
        else:
            params[key] = value
    return SweepTrial(cell, params, seed, state, error=error)


def _cell_from_dirname(name: str) -> str:
    return " ".join(name.split("_"))  # r=4_seed=42: short keys, enough to group and label


def adapter_parameter_count(adapter: Path, problems: list[str]) -> int | None:
    """Parameters saved in adapter_model.safetensors (LoRA matrices and saved heads: what trained),
    counted from the file's JSON header alone; no tensor is read."""
    path = adapter / "adapter_model.safetensors"
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(length, 100_000_000)))
        return sum(_product(t["shape"]) for k, t in header.items() if k != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        problems.append(f"{path}: header unreadable ({exc})")
        return None


def _product(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count


def _json_object(path: Path, problems: list[str]) -> dict:
    data = read_json(path, problems)
    return data if isinstance(data, dict) else {}


# --- what the trials say -------------------------------------------------------------------------


def axes_of(trials: list[SweepTrial]) -> dict[str, list[str]]:
    """Config keys that vary between trials -> their values, numeric ones in numeric order."""
    values: dict[str, list[str]] = {}
    for t in trials:
        for key, value in t.params.items():
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
    return {k: (sorted(v, key=float) if all(_is_number(x) for x in v) else v) for k, v in values.items() if len(v) > 1}


def leaderboard(trials: list[SweepTrial], maximize: bool) -> list[dict]:
    """Configurations (seeds pooled) ranked on the mean validation metric of their COMPLETE trials:
    `runs.leaderboard.rank`, the same function sweep.json's ranking comes from; `trials` is each row's items."""
    entries = [
        leaderboard_rules.Entry(t.config, t.value, t.interval, t.trainable, t.test, t)
        for t in trials
        if t.state == "COMPLETE" and t.value is not None
    ]
    rows = leaderboard_rules.rank(entries, maximize)
    for row in rows:
        row["trials"] = row["items"]
    return rows


def selected(source: ReportSource, board: list[dict]) -> tuple[dict | None, str]:
    """The row the sweep's selection rule (sweep.json "selection", else best) picks, and why."""
    d = source.details
    rule = (d["summary"].get("selection") or {}).get("rule", "best")
    rule = rule if rule in leaderboard_rules.SELECTION_RULES else "best"
    return leaderboard_rules.select(board, rule, d["direction"] != "minimize")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- sections --------------------------------------------------------------------------------------


def sweep_sections(source: ReportSource, files_dir: Path) -> list[Section]:
    """The sweep's own sections, placed before the ordinary runs table."""
    from loraqa.reports import sweep_figures

    d = source.details
    trials, metric, maximize = d["trials"], d["metric"], d["direction"] != "minimize"
    board = leaderboard(trials, maximize)
    axes = axes_of(trials)
    label = f"validation {metric}"
    sections = [_overview(source, trials, board, label, maximize)]

    heat = Section("Heatmaps")
    plan = heatmap_plan(axes)
    if plan is None:
        heat.blocks.append(
            Paragraph(
                "No heatmap: the sweep has fewer than two numeric axes with at most "
                f"{HEATMAP_MAX_VALUES} values each (a search's values: see the next figure).",
                note=True,
            )
        )
    else:
        rows_key, cols_key, panel_key = plan
        for index, panel in enumerate(axes[panel_key] if panel_key else [None]):
            chosen = [t for t in trials if panel is None or t.params.get(panel_key) == panel]
            name = f"heatmap_{index}.png"
            title = (f"{panel_key}={panel}\n" if panel_key else "") + f"{label}: {rows_key} x {cols_key}"
            path = sweep_figures.heatmap(
                chosen,
                rows_key,
                axes[rows_key],
                cols_key,
                axes[cols_key],
                title,
                label,
                maximize,
                files_dir / name,
                _value_range(board),
            )
            heat.blocks.append(
                Figure(
                    path,
                    f"Heatmap of {title.replace(chr(10), ', ')}",
                    "Mean over seeds (and any other axis); a grey cell: no COMPLETE trial (failed, pruned or not run).",
                )
            )
    sections.append(heat)

    scatter = Section(f"{label} against trainable parameters")
    colour_key = plan[2] if plan and plan[2] else next(iter(axes), None)
    path = sweep_figures.metric_vs_parameters(trials, label, colour_key, files_dir / "metric_vs_parameters.png")
    scatter.blocks.append(
        Figure(path, f"{label} against trainable parameters (log scale)")
        if path
        else Paragraph("No COMPLETE trial with a parameter count (adapter file) to plot.", note=True)
    )
    sections.append(scatter)

    effects = Section("Effect of each hyperparameter")
    path = sweep_figures.hyperparameter_effects(trials, axes, label, files_dir / "hyperparameter_effects.png")
    if path:
        effects.blocks.append(
            Figure(
                path,
                f"Mean {label} per value of each hyperparameter",
                "Bar: mean over every COMPLETE trial with that value; whisker: min to max; dots: trials.",
            )
        )
        effects.blocks.append(_effects_table(trials, axes))
    else:
        effects.blocks.append(Paragraph("No hyperparameter varies between COMPLETE trials.", note=True))
    sections.append(effects)
    sections.append(_failed_and_pruned(trials))
    sections.append(_best(board, label, selected(source, board)))
    return sections


def heatmap_plan(axes: dict[str, list[str]]) -> tuple[str, str, str | None] | None:
    """(rows, columns, panels): lora.r x learning rate per module set when present, else the first two
    numeric axes and one panel per value of the first other axis; None without two numeric axes."""
    numeric = [k for k, v in axes.items() if all(_is_number(x) for x in v) and len(v) <= HEATMAP_MAX_VALUES]
    if len(numeric) < 2:
        return None
    preferred = [k for k in PREFERRED_AXES[:2] if k in numeric]
    rows_key, cols_key = (preferred + [k for k in numeric if k not in preferred])[:2]
    others = [k for k in axes if k not in (rows_key, cols_key) and len(axes[k]) <= HEATMAP_MAX_VALUES]
    panel_key = PREFERRED_AXES[2] if PREFERRED_AXES[2] in others else (others[0] if others else None)
    return rows_key, cols_key, panel_key


def _value_range(board: list[dict]) -> tuple[float, float] | None:
    values = [t.value for row in board for t in row["trials"]]
    return (min(values), max(values)) if values else None


def _overview(source: ReportSource, trials, board, label: str, maximize: bool) -> Section:
    section = Section("Leaderboard")
    counts = defaultdict(int)
    for t in trials:
        counts[t.state] += 1
    summary = source.details["summary"]
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    section.blocks.append(
        Paragraph(
            f"{len(trials)} trial(s): {states}. Ranked on {label} "
            f"({'higher' if maximize else 'lower'} is better), the mean over each "
            "configuration's seeds; the test scores beside it are never used to choose."
        )
    )
    if not summary:
        section.blocks.append(
            Paragraph(
                f"No {SWEEP_FILE}: the sweep has not finished (run its command again); "
                "this report is built from the trials' run directories.",
                note=True,
            )
        )
    header = [
        "rank",
        "configuration",
        "seeds",
        f"{label} mean",
        "s.e.",
        "std",
        "range",
        "test F1",
        "test EM",
        "trainable params",
        "best run",
    ]
    rows = [
        [
            str(i + 1),
            r["config"] or "(one configuration)",
            str(len(r["trials"])),
            f"{r['mean']:.3f}",
            f"{r['standard_error']:.3f}",
            f"{r['std']:.3f}",
            f"{r['range']:.3f}",
            _number(r["test_f1"]),
            _number(r["test_exact_match"]),
            _count(r["best"].trainable),
            r["best"].run.name if r["best"].run else NA,
        ]
        for i, r in enumerate(board)
    ]
    if rows:
        section.blocks.append(Table(header, rows, "Configurations, best first"))
    else:
        section.blocks.append(Paragraph("No trial has completed yet.", note=True))
    section.blocks.append(
        Paragraph(
            "s.e.: standard error of the mean, from the spread over seeds and the finite "
            "validation questions (each trial's bootstrap interval); std: sample standard "
            "deviation over seeds; range: best minus worst seed. Two configurations whose "
            "means differ by less than about two standard errors are not told apart by "
            "this sweep.",
            note=True,
        )
    )
    for problem in source.details["problems"]:
        section.blocks.append(Paragraph(problem, note=True))
    return section


def _effects_table(trials, axes) -> Table:
    rows = []
    for key, values in axes.items():
        for value in values:
            scores = [
                t.value for t in trials if t.state == "COMPLETE" and t.value is not None and t.params.get(key) == value
            ]
            spread = f"{min(scores):.3f} to {max(scores):.3f}" if scores else NA
            rows.append(
                [key, value, str(len(scores)), _number(statistics.fmean(scores) if scores else None, 3), spread]
            )
    return Table(["hyperparameter", "value", "trials", "mean", "min to max"], rows, "Mean per value (COMPLETE trials)")


def _failed_and_pruned(trials) -> Section:
    section = Section("Failed and pruned trials")
    rows = [
        [
            t.cell,
            t.state,
            f"pruned at step {t.pruned_at}" if t.state == "PRUNED" else (t.error or "no error recorded"),
            t.run.name if t.run else "(no run directory)",
        ]
        for t in trials
        if t.state in ("FAIL", "PRUNED", "UNFINISHED")
    ]
    if rows:
        section.blocks.append(Table(["trial", "state", "why", "run directory"], rows))
        section.blocks.append(
            Paragraph(
                "A pruned trial stopped early because its validation metric lagged the other "
                "trials at the same step; its adapter is the partly trained one.",
                note=True,
            )
        )
    else:
        section.blocks.append(Paragraph("Every trial completed.", note=True))
    return section


def _best(board, label: str, choice: tuple[dict | None, str]) -> Section:
    section = Section("Best configuration")
    top, why = choice
    if not board or top is None:
        section.blocks.append(Paragraph("No trial has completed yet.", note=True))
        return section
    best = top["best"]
    section.blocks.append(
        Paragraph(
            f"`{top['config'] or '(one configuration)'}`: {label} {top['mean']:.3f} over "
            f"{len(top['trials'])} seed(s) (std {top['std']:.3f}, s.e. {top['standard_error']:.3f}); "
            f"test F1 {_number(top['test_f1'])}, EM {_number(top['test_exact_match'])}. "
            f"Best seed's run: {best.run.path if best.run else NA}."
        )
    )
    section.blocks.append(Paragraph(f"Chosen by `--select`: {why}.", note=True))
    if best.run:
        command = recorded_command(best.run)  # the trial's own `loraqa train` line (its summary's `command`)
        if command:
            section.blocks.append(
                Paragraph(
                    "Reproduce it as an ordinary run (the sweep's config, its overrides and "
                    "this trial's values and seed; from the directory the sweep ran in):"
                )
            )
            section.blocks.append(Code(command))
        else:
            section.blocks.append(
                Paragraph(
                    "Command not recorded (a sweep from before trials recorded theirs); retrain "
                    "it from its config.yaml, which holds every setting the trial used:",
                    note=True,
                )
            )
            rerun = f"output_dir={best.run.path.parent}-rerun/best"
            section.blocks.append(
                Code(shlex.join(["loraqa", "train", str(best.run.path / CONFIG_FILE), rerun, "--validation"]))
            )
        section.blocks.append(Paragraph("Use the adapter it trained:"))
        adapter = shlex.quote(str(best.run.path / ADAPTER_DIR))
        section.blocks.append(Code(f"loraqa predict --adapter {adapter} --question '...' --context '...'"))
    return section


def _number(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else NA


def _count(value) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) else NA


TOP_RUNS = 5  # runs whose curves, failures and provenance a sweep report shows: the best ones


def top_runs(source: ReportSource) -> list[RunRecord]:
    """The best-ranked configurations' best runs (a 75-run sweep's curves would be unreadable)."""
    d = source.details
    board = leaderboard(d["trials"], d["direction"] != "minimize")
    pick, _ = selected(source, board)
    ordered = ([pick] if pick else []) + [row for row in board if row is not pick]  # the chosen one first
    return [row["best"].run for row in ordered[:TOP_RUNS] if row["best"].run] or source.runs[:TOP_RUNS]
