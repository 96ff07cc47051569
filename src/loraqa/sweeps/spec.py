"""What a sweep is asked to do (`SweepSpec`) and the checks it passes before anything runs.

Kept apart from the worker, which imports the training pipeline (torch, transformers): the command
line runs `check_spec` first, so a mistyped grid value or a rate out of range is one line within a
second, not after the libraries load (`cli_checks.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loraqa.config.loader import build_config, config_to_dict, read_config_file
from loraqa.errors import ConfigError, FlagError
from loraqa.runs.reading import flatten
from loraqa.suggest import did_you_mean
from loraqa.sweeps.space import configurations_to_check, parse_grid, parse_space

METRICS = {"f1": True, "exact_match": True, "rougeL": True, "eval_loss": False}  # name -> maximize


@dataclass
class SweepSpec:
    config: str | None
    overrides: list[str]
    name: str
    sweep_dir: Path
    grid: list[str] = field(default_factory=list)
    search: str | None = None  # tpe or random
    space: list[str] = field(default_factory=list)
    trials: int | None = None
    seeds: int = 1
    workers: int = 1
    storage: str | None = None
    metric: str = "f1"
    select: str = "best"  # runs/leaderboard.py: best mean, or one-se (smallest within one standard error)
    prune: str = "none"
    prune_warmup: float = 0.25  # share of a trial's steps in which it is never pruned
    heartbeat_interval: int = 30
    grace_period: int | None = None  # None: 3 heartbeats
    worker: bool = False  # this process is one of --workers N started by the command
    torch_threads: int | None = None
    argv: list[str] = field(default_factory=list)  # the command line, to start workers with


def check_spec(spec: SweepSpec) -> tuple[list, dict, list[int]]:
    """Every check a sweep can make before a model or a worker: flags, the space's keys, and each
    trial's config (grid cells, search bounds); returns its axes, search space and seeds."""
    if spec.metric not in METRICS:
        raise FlagError("--metric", f"must be one of {', '.join(METRICS)}, got {spec.metric!r}")
    if bool(spec.grid) == bool(spec.search):
        raise FlagError("--grid/--search", "give either --grid AXIS... or --search tpe|random with --space")
    if spec.search and (not spec.space or not spec.trials or spec.trials < 1):
        raise FlagError("--space", "--search needs --space key=dist(...) and --trials N (N >= 1)")
    if spec.seeds < 1 or spec.workers < 1:
        raise FlagError("--seeds/--workers", "must be at least 1")
    if not 0.0 <= spec.prune_warmup < 1.0:
        raise FlagError("--prune-warmup", f"must be in [0, 1): a share of each trial's steps, got {spec.prune_warmup}")
    axes, space = parse_grid(spec.grid), parse_space(spec.space)
    raw = read_config_file(spec.config)
    base = build_config(raw, spec.overrides)  # the shared part must be valid before any trial
    known = config_to_dict(base)
    for key in [a.key for a in axes] + list(space):
        node = known
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                close = did_you_mean(key, flatten(known))
                raise ConfigError(key, f"unknown config key in the sweep's space{close or ' (see `loraqa config`)'}")
            node = node[part]
    # Every trial's config too, before any worker starts: a value every trial would fail on (a
    # mistyped `batch_size=4,x`, a rate out of range) is one line now, not N failed trials.
    for overrides in configurations_to_check(axes, space):
        try:
            build_config(raw, [*spec.overrides, *overrides])
        except ConfigError as exc:
            raise ConfigError(exc.key, f"{exc.problem} (in the sweep's trials with {' '.join(overrides)})") from None
    if spec.metric == "eval_loss" and not base.evaluation.with_loss:
        raise ConfigError(
            "evaluation.with_loss", "--metric eval_loss needs the validation loss: set evaluation.with_loss=true"
        )
    if base.data.validation_samples < 1:
        raise ConfigError("data.validation_samples", "a sweep chooses on validation: it must be at least 1")
    if spec.prune != "none" and base.training.eval_strategy == "no":
        raise ConfigError(
            "training.eval_strategy",
            "--prune needs evaluations during training: set training.eval_strategy=steps and training.eval_steps=N",
        )
    seeds = [base.training.seed + i for i in range(spec.seeds)]  # training.seed given is the first
    return axes, space, seeds
