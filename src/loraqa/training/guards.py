"""Guards that stop training when its numbers go wrong: non-finite losses, gradients or weights
(`FiniteGuard`, one fused check and one host read per optimizer step), and a training loss that
explodes (`DivergenceGuard`). Each is a Trainer callback that asks its trainer to `stop(...)`.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from transformers import TrainerCallback


class Stoppable(Protocol):
    """What a guard needs of its trainer (QATrainer in training/trainer.py, which imports the guards)."""

    divergence_warning: str | None

    def stop(self, problem: str, remedy: str = "") -> None: ...


def non_finite_parameter(model, gradients: bool = False) -> str | None:
    """The name of the first trainable parameter (or its gradient) holding a nan or inf; None if none."""
    named = [(n, p.grad if gradients else p) for n, p in model.named_parameters() if p.requires_grad]
    return first_non_finite([(n, t) for n, t in named if t is not None])


def first_non_finite(named: list[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first tensor holding a nan or inf; None if none.

    One fused kernel per device and dtype, `torch._foreach_norm` with ord=inf (a max-abs that keeps nan
    and inf; an L2 norm would overflow to inf on large finite values), and one host read for all of them.
    """
    if not named:
        return None
    norms = torch._foreach_norm([t.detach() for _, t in named], float("inf"))
    finite = read_flags(torch.stack([norm.float() for norm in norms]).isfinite())
    return next((name for (name, _), ok in zip(named, finite, strict=True) if not ok), None)


def read_flags(flags: torch.Tensor) -> list[bool]:
    """The finite-value guard's host read (a device sync on a GPU): one per check; tests count them."""
    return flags.cpu().tolist()


LOSS = "the training loss"  # first_non_finite's name for a micro-step's loss


class FiniteGuard(TrainerCallback):
    """Stops training when a micro-step's loss or a LoRA gradient (before the optimizer applies it) is
    not finite, and when a trainable weight is (at every logging, saving and evaluating step and the
    last: the weights a checkpoint, a log line or the adapter would hold). A step can break the weights
    with a finite loss, so the loss check alone lets every later checkpoint be NaN.

    Cost: the losses of an optimizer step's micro-steps stay on the device until its gradients are
    checked with them, one fused check and one host read per optimizer step; the weights' check is one
    more read on the steps named above. Under fp16 an inf gradient is routine (the loss scaler then
    skips that step), so only the losses and weights are checked there."""

    def __init__(self, trainer: Stoppable):
        self.trainer = trainer
        self.losses: list[torch.Tensor] = []  # this optimizer step's micro-step losses, unread

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        losses, self.losses = self.losses, []
        gradients = (
            []
            if args.fp16
            else [(n, p.grad) for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
        )
        name = first_non_finite([(LOSS, loss) for loss in losses] + gradients)
        if name == LOSS:
            value = next(float(loss) for loss in losses if not torch.isfinite(loss))
            self.trainer.stop(f"the training loss became {value} at step {state.global_step + 1}")
        if name:
            self.trainer.stop(f"the gradient of {name} became non-finite at step {state.global_step + 1}")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Trainer's flow callback ran first and set these for this step.
        if control.should_log or control.should_save or control.should_evaluate or control.should_training_stop:
            name = non_finite_parameter(model)
            if name:
                self.trainer.stop(f"the trainable weight {name} became non-finite at step {state.global_step}")


class DivergenceGuard(TrainerCallback):
    """Stops training (or, with `stop=False`, records a warning once) when the logged training loss
    exceeds both DIVERGENCE_FACTOR x the first logged loss and DIVERGENCE_FLOOR.

    Why these: the losses here are cross-entropies (tokens, or span starts and ends), and a model
    guessing uniformly scores ln(classes), at most ln(3.3M) = 15 for any vocabulary or window in
    use; a loss above that is worse than guessing, which no learning run reaches, while ten times
    the starting loss rules out the noise of a run that starts near zero. Both are judged on the
    logged (interval-averaged) loss, so a single noisy batch does not trigger it. A resumed run
    keeps the first logged loss of its log history as the reference.
    """

    def __init__(self, trainer: Stoppable, stop: bool):
        self.trainer = trainer
        self.stop = stop

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
        if loss is None or not losses or not math.isfinite(loss) or self.trainer.divergence_warning:
            return
        first = losses[0]
        if loss > DIVERGENCE_FACTOR * first and loss > DIVERGENCE_FLOOR:
            problem = (
                f"the training loss diverged at step {state.global_step}: {loss:.4g}, over "
                f"{DIVERGENCE_FACTOR:g}x the first logged {first:.4g} and above {DIVERGENCE_FLOOR:g} "
                "(worse than guessing)"
            )
            if self.stop:
                self.trainer.stop(problem, "; set training.stop_on_divergence=false to train on regardless")
            self.trainer.divergence_warning = f"{problem}; the adapter is probably useless"


DIVERGENCE_FACTOR = 10.0
DIVERGENCE_FLOOR = 15.0
