"""Series out of transformers' log history (train_log.jsonl), and the EMA that smooths them.

`trainer.state.log_history` mixes three kinds of entries, told apart by their keys:
training logs (`loss`, `grad_norm`, `learning_rate`, `step`), evaluations (`eval_*`, `step`) and
one closing summary (`train_loss`, `train_runtime`, ...). Only the first two are curves.
"""

from __future__ import annotations

import math

# TensorBoard's default smoothing weight: each point keeps 60% of the running average.
EMA_WEIGHT = 0.6


def training_loss(log: list[dict]) -> tuple[list[float], list[float]]:
    """(steps, loss) of the training-loss entries, finite values only, in log order."""
    return _points(log, "loss")


def evaluation_metric(log: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, value) of an evaluation metric such as "eval_loss" or "eval_f1"."""
    return _points(log, key)


def ema(values: list[float], weight: float = EMA_WEIGHT) -> list[float]:
    """Debiased exponential moving average, as TensorBoard draws it.

    s_t = weight * s_{t-1} + (1 - weight) * x_t with s_0 = 0, divided by (1 - weight**t) so the
    first points are not pulled towards zero; weight 0 returns the values unchanged.
    """
    smoothed, running = [], 0.0
    for t, value in enumerate(values, start=1):
        running = weight * running + (1 - weight) * value
        smoothed.append(running / (1 - weight**t) if weight < 1 else value)
    return smoothed


def _points(log: list[dict], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for entry in log:
        value, step = entry.get(key), entry.get("step")
        if _is_number(value) and _is_number(step) and math.isfinite(value):
            steps.append(float(step))
            values.append(float(value))
    return steps, values


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
