"""Training's console output: one line per logging step instead of Trainer's raw dicts.

    loraqa: step 20/100  loss 1.234  lr 2.00e-04  38.1 examples/s  ETA 0:01:05

Each line goes through `console.say` (rank 0 only, quiet under --quiet). On a terminal a progress bar
sits under the lines; the lines are written above it (tqdm.write), so the two never share a line.
Off a terminal there is no bar at all, so a log file holds the lines and no carriage returns or
escape codes. Trainer's own ProgressCallback/PrinterCallback are replaced by this one.
"""

from __future__ import annotations

import datetime
import sys
import time

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from loraqa.console import bars_enabled, say

# Trainer's summary entry at the end of training: loraqa prints its own (the run's timings).
_SUMMARY_KEYS = ("train_runtime", "train_loss")


def use_step_lines(trainer, examples_per_step: int) -> None:
    """Replace Trainer's dict printing and bar with `StepLines`."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StepLines(examples_per_step))


class StepLines(TrainerCallback):
    def __init__(self, examples_per_step: int):
        self.examples_per_step = examples_per_step
        self.bar = None
        self.started = 0.0
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.perf_counter(), state.global_step  # a resumed run starts mid-way
        if state.is_world_process_zero and bars_enabled():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                unit="step",
                desc="training",
                dynamic_ncols=True,
                leave=False,
                file=sys.stderr,
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or any(key in logs for key in _SUMMARY_KEYS):
            return
        line = step_line(
            logs, state.global_step, state.max_steps, self._rate(state.global_step), self.examples_per_step
        )
        if self.bar is not None:
            self.bar.write(f"loraqa: {line}", file=sys.stderr)
        else:
            say(line)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _rate(self, step: int) -> float | None:
        """Optimiser steps per second since this process started training (None before one)."""
        elapsed = time.perf_counter() - self.started
        done = step - self.first_step
        return done / elapsed if done > 0 and elapsed > 0 else None


def step_line(logs: dict, step: int, max_steps: int, steps_per_second: float | None, examples_per_step: int = 0) -> str:
    """`step 20/100  loss 1.234  lr 2.00e-04  38.1 examples/s  ETA 0:01:05`; an evaluation's entry
    (eval_* keys) reads `step 20/100  validation: eval_loss 1.2  f1 45.6`."""
    parts = [f"step {step}/{max_steps}"]
    if any(key.startswith("eval_") for key in logs):
        values = [
            f"{key.removeprefix('eval_')} {_number(value)}"
            for key, value in logs.items()
            if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")) and _is_number(value)
        ]
        return "  ".join([*parts, "validation: " + "  ".join(values)])
    if _is_number(logs.get("loss")):
        parts.append(f"loss {float(logs['loss']):.3f}")
    if _is_number(logs.get("learning_rate")):
        parts.append(f"lr {float(logs['learning_rate']):.2e}")
    if steps_per_second:
        if examples_per_step:
            parts.append(f"{steps_per_second * examples_per_step:.1f} examples/s")
        remaining = max(max_steps - step, 0) / steps_per_second
        parts.append(f"ETA {datetime.timedelta(seconds=round(remaining))}")
    return "  ".join(parts)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _number(value) -> str:
    return f"{float(value):.4g}"
