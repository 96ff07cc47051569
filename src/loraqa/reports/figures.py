"""The report's plots: one function per figure, each writing one PNG and returning its path.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no display, no
global state touched), so a report can be written from any process, headless or not. A function
returns None when the runs hold nothing to draw, and the report says so instead of showing an
empty frame. Each run keeps one colour in every figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from loraqa.metrics.calibration import BINS, Calibrator
from loraqa.reports.curves import EMA_WEIGHT, ema, evaluation_metric, training_loss
from loraqa.runs.record import RunRecord

DPI = 100
WIDE = (11.0, 4.4)  # inches: 1100 x 440 px at DPI, readable at full width of a laptop screen
FAILURE_ROW_INCHES = 0.45


def run_color(index: int):
    """tab10 for the first ten runs (matplotlib's default cycle), then tab20's lighter shades:
    twenty runs before a colour repeats (sweeps and variant comparisons have more than ten)."""
    if index % 20 < 10:
        return f"C{index % 10}"
    return matplotlib.colormaps["tab20"](2 * (index % 10) + 1)


def _marker(points) -> str | None:
    """Dots where a curve has few points: a short run logs one or two, and a line alone draws nothing."""
    return "o" if len(points) <= 20 else None


def loss_curves(runs: list[RunRecord], path: Path) -> Path | None:
    """Training loss (raw faint, EMA solid) and validation loss, all runs on shared axes."""
    curves = [(i, run, training_loss(run.log), evaluation_metric(run.log, "eval_loss")) for i, run in enumerate(runs)]
    curves = [c for c in curves if c[2][0] or c[3][0]]
    if not curves:
        return None
    with_validation = any(c[3][0] for c in curves)
    figure = _figure(WIDE)
    axes = figure.subplots(1, 2 if with_validation else 1, sharex=True, sharey=True, squeeze=False)[0]
    train_ax = axes[0]
    for index, run, (steps, losses), _ in curves:
        if steps:
            color = run_color(index)
            train_ax.plot(steps, losses, color=color, alpha=0.3, linewidth=1)
            train_ax.plot(steps, ema(losses), color=color, linewidth=2, marker=_marker(steps), label=run.name)
    train_ax.set_title(f"Training loss (faint: raw, solid: EMA {EMA_WEIGHT})")
    _label(train_ax, "step (optimizer steps)", "loss (nats)")
    style_legend = [
        Line2D([], [], color="0.4", alpha=0.3, linewidth=1, label="raw"),
        Line2D([], [], color="0.4", linewidth=2, label=f"EMA {EMA_WEIGHT}"),
    ]
    _legend(train_ax, extra=style_legend)
    if with_validation:
        val_ax = axes[1]
        for index, run, _, (steps, losses) in curves:
            if steps:
                val_ax.plot(steps, losses, color=run_color(index), marker="o", linewidth=2, label=run.name)
        val_ax.set_title("Validation loss (each evaluation)")
        _label(val_ax, "step (optimizer steps)", "loss (nats)")
        val_ax.tick_params(labelleft=True)
        _legend(val_ax)
    return _save(figure, path)


def validation_f1(runs: list[RunRecord], path: Path) -> Path | None:
    """Validation F1 (solid) and exact match (dashed) at each evaluation during training."""
    figure = _figure(WIDE)
    ax = figure.subplots()
    drawn = False
    for index, run in enumerate(runs):
        steps, f1s = evaluation_metric(run.log, "eval_f1")
        if not steps:
            continue
        drawn = True
        color = run_color(index)
        ax.plot(steps, f1s, color=color, marker="o", linewidth=2, label=f"{run.name} F1")
        em_steps, ems = evaluation_metric(run.log, "eval_exact_match")
        if em_steps:
            ax.plot(
                em_steps, ems, color=color, marker=".", linestyle="--", linewidth=1, alpha=0.7, label=f"{run.name} EM"
            )
    if not drawn:
        return None
    ax.set_title("Validation F1 and exact match during training")
    _label(ax, "step (optimizer steps)", "score (%)")
    ax.set_ylim(bottom=0)
    _legend(ax)
    return _save(figure, path)


def failure_counts(runs: list[RunRecord], path: Path, categories: list[str]) -> Path | None:
    """Wrong test answers per failure category, one bar per run (the adapter's evaluation)."""
    counts = [(i, run, _failures(run)) for i, run in enumerate(runs)]
    counts = [c for c in counts if c[2]]
    if not counts or not categories:
        return None
    height = max(2.6, 1.2 + FAILURE_ROW_INCHES * len(categories) * max(1, len(counts)) ** 0.5)
    figure = _figure((WIDE[0], height))
    ax = figure.subplots()
    bar = 0.8 / len(counts)
    for slot, (index, run, failures) in enumerate(counts):
        ys = [c + slot * bar - 0.4 + bar / 2 for c in range(len(categories))]
        values = [failures.get(category, 0) for category in categories]
        ax.barh(ys, values, height=bar, color=run_color(index), label=run.name)
        for y, value in zip(ys, values, strict=True):
            if value:
                ax.annotate(str(value), (value, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_yticks(range(len(categories)), [c.replace("_", " ") for c in categories])
    ax.invert_yaxis()  # most serious category (the order of metrics/failures.py) on top
    ax.set_title("Wrong test answers by failure category (adapter)")
    _label(ax, "questions (count)", None)
    ax.margins(x=0.12)
    _legend(ax)
    return _save(figure, path)


def slice_f1(run: RunRecord, path: Path) -> Path | None:
    """The adapter's test F1 per slice (metrics.json "slices"), one bar each with its 95% interval as
    the error bar, grouped by dimension; n beside each bar."""
    slices = run.adapter.metrics.get("slices") if run.adapter else None
    if not isinstance(slices, dict) or not slices:
        return None
    bars = [
        (f"{dimension.replace('_', ' ')}: {name}", s)
        for dimension, group in slices.items()
        if isinstance(group, dict)
        for name, s in group.items()
        if isinstance(s, dict) and "f1" in s
    ]
    if not bars:
        return None
    figure = _figure((WIDE[0], max(2.6, 1.0 + 0.28 * len(bars))))
    ax = figure.subplots()
    values = [s["f1"] for _, s in bars]
    low = [s["f1"] - s.get("f1_ci", {}).get("low", s["f1"]) for _, s in bars]
    high = [s.get("f1_ci", {}).get("high", s["f1"]) - s["f1"] for _, s in bars]
    ax.barh(range(len(bars)), values, xerr=[low, high], color=run_color(0), alpha=0.8, capsize=2)
    for y, (_, s) in enumerate(bars):
        ax.annotate(
            f"n={s['n']}",
            (min(100.0, s["f1"] + high[y]), y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_title(f"Test F1 by slice, with 95% intervals ({run.name})")
    _label(ax, "F1 (0-100)", None)
    return _save(figure, path)


def confidence(run: RunRecord, path: Path) -> Path | None:
    """Left: reliability diagram on the test split, raw and calibrated confidence (15 bins) against
    exact-match accuracy. Right: the coverage curve, F1 when answering only the most confident X%."""
    calibration = run.adapter.metrics.get("calibration") if run.adapter else None
    rows = [r for r in (run.adapter.rows if run.adapter else []) if isinstance(r.get("confidence"), (int, float))]
    if not isinstance(calibration, dict) or not rows:
        return None
    conf = np.clip(np.array([r["confidence"] for r in rows], dtype=float), 0, 1)
    right = np.array([float(r.get("exact_match", 0)) for r in rows])
    figure = _figure(WIDE)
    left, right_ax = figure.subplots(1, 2)
    left.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfectly calibrated")
    calibrated = Calibrator.from_dict(calibration.get("calibrator") or {}).apply(conf)
    for values, label, color in ((conf, "raw", run_color(1)), (calibrated, "calibrated", run_color(0))):
        index = np.minimum((values * BINS).astype(int), BINS - 1)
        xs = [values[index == b].mean() for b in range(BINS) if (index == b).any()]
        ys = [right[index == b].mean() for b in range(BINS) if (index == b).any()]
        left.plot(xs, ys, marker="o", color=color, label=label)
    left.set_title("Reliability (test)")
    left.set_xlabel("confidence")
    left.set_ylabel("exact-match accuracy")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    curve = calibration.get("coverage") or []
    right_ax.plot(
        [100 * c["coverage"] for c in curve], [c["f1"] for c in curve], marker="o", color=run_color(0), label="F1"
    )
    right_ax.plot(
        [100 * c["coverage"] for c in curve],
        [c["exact_match"] for c in curve],
        marker="s",
        color=run_color(2),
        label="EM",
    )
    right_ax.set_title("Answering only the most confident")
    right_ax.set_xlabel("questions answered (%)")
    right_ax.set_ylabel("score on those (0-100)")
    right_ax.grid(True, alpha=0.3)
    right_ax.legend(fontsize=8)
    return _save(figure, path)


def no_answer_threshold(run: RunRecord, path: Path) -> Path | None:
    """SQuAD v2: validation F1, HasAns F1 and NoAns F1 against the no-answer threshold, with the
    chosen threshold marked (`metrics.json` `no_answer_threshold`, metrics/abstention.py)."""
    chosen = run.adapter.metrics.get("no_answer_threshold") if run.adapter else None
    curve = chosen.get("curve") if isinstance(chosen, dict) else None
    if not curve:
        return None
    figure = _figure(WIDE)
    ax = figure.subplots()
    xs = [point["threshold"] for point in curve]
    for key, label, color in (("f1", "F1", 0), ("HasAns_f1", "HasAns F1", 1), ("NoAns_f1", "NoAns F1", 2)):
        ax.plot(xs, [point[key] for point in curve], color=run_color(color), label=label, drawstyle="steps-post")
    ax.axvline(chosen["value"], color="0.3", linestyle="--", label=f"chosen: {chosen['value']:.3f}")
    ax.set_title(f"No-answer threshold on validation ({run.name}): above it, the model answers nothing")
    ax.set_xlabel("null score difference threshold")
    ax.set_ylabel("validation score (0-100)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


def _failures(run: RunRecord) -> dict[str, int]:
    if run.adapter is None:
        return {}
    recorded = run.adapter.metrics.get("failures")
    if isinstance(recorded, dict):
        return {str(k): int(v) for k, v in recorded.items() if isinstance(v, (int, float))}
    counted: dict[str, int] = {}
    for row in run.adapter.rows:
        if row.get("failure"):
            counted[row["failure"]] = counted.get(row["failure"], 0) + 1
    return counted


def _figure(size: tuple[float, float]) -> Figure:
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _label(ax, xlabel: str, ylabel: str | None) -> None:
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and counts are whole numbers
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _legend(ax, extra: list | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    handles += extra or []
    labels += [h.get_label() for h in extra or []]
    if handles:
        ax.legend(handles, labels, fontsize=9, loc="best", framealpha=0.85)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path
