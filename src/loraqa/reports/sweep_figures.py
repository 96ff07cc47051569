"""A sweep report's plots: one function per figure, each writing one PNG (Agg canvas, as figures.py).

Each returns the PNG's path, or None when the trials hold nothing to draw.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from loraqa.reports.figures import WIDE, _figure, _save, run_color

SQUARE = (7.0, 5.0)  # inches: 700 x 500 px


def heatmap(
    trials,
    rows_key: str,
    rows: list[str],
    cols_key: str,
    cols: list[str],
    title: str,
    label: str,
    maximize: bool,
    path: Path,
    value_range: tuple[float, float] | None,
) -> Path:
    """Mean validation metric per (row value, column value) over COMPLETE trials; NaN cells grey."""
    grid = np.full((len(rows), len(cols)), np.nan)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            values = [
                t.value
                for t in trials
                if t.state == "COMPLETE"
                and t.value is not None
                and t.params.get(rows_key) == row
                and t.params.get(cols_key) == col
            ]
            if values:
                grid[i, j] = statistics.fmean(values)
    figure = _figure((max(6.5, 2.5 + 1.1 * len(cols)), max(3.6, 1.6 + 0.6 * len(rows))))
    ax = figure.subplots()
    ax.set_facecolor("0.85")  # a missing cell shows the grey background
    low, high = value_range or (
        np.nanmin(grid) if np.isfinite(grid).any() else 0.0,
        np.nanmax(grid) if np.isfinite(grid).any() else 1.0,
    )
    cmap = "viridis" if maximize else "viridis_r"  # the better score is always the brighter colour
    if high <= low:  # every cell equal: a unit-wide scale (a 1e-9 one would print an offset)
        low, high = low - 0.5, high + 0.5
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(cols_key)
    ax.set_ylabel(rows_key)
    ax.set_title(title, fontsize=10, wrap=True)
    for i in range(len(rows)):
        for j in range(len(cols)):
            value = grid[i, j]
            text = "—" if math.isnan(value) else f"{value:.3g}"
            shade = 0.5 if math.isnan(value) else image.norm(value)
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=9,
                color="black" if (shade > 0.6) == maximize else "white",
            )
    figure.colorbar(image, ax=ax, label=label)
    return _save(figure, path)


def metric_vs_parameters(trials, label: str, colour_key: str | None, path: Path) -> Path | None:
    """Each COMPLETE trial's validation metric against its trainable parameters, log x, one colour per value."""
    points = [t for t in trials if t.state == "COMPLETE" and t.value is not None and t.trainable]
    if not points:
        return None
    figure = _figure(WIDE)
    ax = figure.subplots()
    groups = sorted({t.params.get(colour_key, "") for t in points}) if colour_key else [""]
    for index, group in enumerate(groups):
        chosen = [t for t in points if not colour_key or t.params.get(colour_key, "") == group]
        ax.scatter(
            [t.trainable for t in chosen],
            [t.value for t in chosen],
            color=run_color(index),
            s=36,
            alpha=0.8,
            label=f"{colour_key}={group}" if colour_key else None,
            edgecolors="white",
            linewidths=0.5,
        )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} against trainable parameters")
    ax.grid(True, alpha=0.3, which="both")
    if colour_key:
        ax.legend(fontsize=9, loc="best", framealpha=0.85)
    return _save(figure, path)


def hyperparameter_effects(trials, axes: dict[str, list[str]], label: str, path: Path) -> Path | None:
    """One panel per hyperparameter: mean metric per value (bar), min-max whisker, each trial a dot."""
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    keys = [k for k in axes if any(t.params.get(k) is not None for t in done)]
    if not done or not keys:
        return None
    figure = _figure((max(WIDE[0], 3.7 * len(keys)), WIDE[1]))
    panels = figure.subplots(1, len(keys), sharey=True, squeeze=False)[0]
    for index, (ax, key) in enumerate(zip(panels, keys, strict=True)):
        values = [v for v in axes[key] if any(t.params.get(key) == v for t in done)]
        scores = [[t.value for t in done if t.params.get(key) == v] for v in values]
        means = [statistics.fmean(s) for s in scores]
        spread = [
            [m - min(s) for m, s in zip(means, scores, strict=True)],
            [max(s) - m for m, s in zip(means, scores, strict=True)],
        ]
        ax.bar(range(len(values)), means, color=run_color(index), alpha=0.55, yerr=spread, capsize=4)
        for x, s in enumerate(scores):
            ax.scatter([x] * len(s), s, color="0.15", s=10, zorder=3)
        ax.set_xticks(range(len(values)), [_short(v) for v in values], rotation=30 if len(values) > 4 else 0)
        ax.set_xlabel(key)
        ax.grid(True, axis="y", alpha=0.3)
    panels[0].set_ylabel(f"{label} (mean, min-max)")
    figure.suptitle(f"Effect of each hyperparameter on {label}")
    return _save(figure, path)


def _short(value: str) -> str:
    return value if len(value) <= 12 else value[:11] + "…"
