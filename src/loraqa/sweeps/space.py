"""The search space of a sweep: grid axes, search distributions, seeds, and the cells they make.

A grid is `key=v1,v2,...` per axis; its cells are the product of the axes times the seeds, in one
deterministic order, each with a stable key (`lora.r=4 training.learning_rate=1e-4 seed=42`) and a
directory name, so every worker, on every machine and after every restart, agrees on what cell
N is. A search space is `key=loguniform(a,b)`, `uniform(a,b)`, `int(a,b)` or `choice(a,b,...)`,
sampled by Optuna. Values keep the text the user typed in the overrides (`1e-4` stays `1e-4`)
and a typed copy for Optuna's params (what the dashboard shows).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import optuna

from loraqa.errors import ConfigError

SEED_KEY = "training.seed"


@dataclass(frozen=True)
class Axis:
    key: str  # a config key, e.g. lora.r
    values: tuple[str, ...]  # as typed on the command line


@dataclass(frozen=True)
class Cell:
    """One configuration and seed: what one trial trains."""

    params: tuple[tuple[str, str], ...]  # (config key, value as typed), in axis order
    seed: int

    @property
    def key(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params) + f" seed={self.seed}"

    @property
    def config_key(self) -> str:
        """The configuration without its seed: seeds of one configuration share it."""
        return " ".join(f"{k}={v}" for k, v in self.params)

    @property
    def dirname(self) -> str:
        parts = [f"{k.rsplit('.', 1)[-1]}={_safe(v)}" for k, v in self.params]
        return "_".join([*parts, f"seed={self.seed}"])

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.params] + [f"{SEED_KEY}={self.seed}"]

    def typed_params(self) -> dict[str, object]:
        return {k: typed(v) for k, v in self.params}


def parse_grid(items: list[str]) -> list[Axis]:
    """`key=v1,v2` per item -> axes; a key twice or an axis without values is a ConfigError."""
    axes: list[Axis] = []
    for item in items:
        key, values = _split(item, "--grid")
        choices = tuple(v.strip() for v in values.split(",") if v.strip())
        if not choices:
            raise ConfigError(key, f"--grid {item!r} has no values (write {key}=a,b,c)")
        if len(set(choices)) != len(choices):
            raise ConfigError(key, f"--grid {item!r} lists a value twice")
        if key == SEED_KEY:
            raise ConfigError(key, "use --seeds N to repeat configurations with other seeds")
        axes.append(Axis(key, choices))
    _no_repeats([a.key for a in axes])
    return axes


def grid_cells(axes: list[Axis], seeds: list[int]) -> list[Cell]:
    """Every cell, in one fixed order (axes as given, then seeds): the same on every worker."""
    return [
        Cell(tuple(zip([a.key for a in axes], combo, strict=True)), seed)
        for combo in itertools.product(*[a.values for a in axes])
        for seed in seeds
    ]


def configurations_to_check(axes: list[Axis], space: dict) -> list[list[str]]:
    """The overrides that make each trial's config, seeds aside, to check before any trial runs:
    every grid cell, and each search key at its bounds or each of its choices (a sampled value
    lies between the bounds, and every check on one number is a range)."""
    cells = [
        [f"{a.key}={v}" for a, v in zip(axes, combo, strict=True)]
        for combo in itertools.product(*[a.values for a in axes])
    ]
    searched = [[f"{key}={value}"] for key, dist in space.items() for value in _extremes(dist)]
    return (cells if axes else []) + searched


def _extremes(dist: optuna.distributions.BaseDistribution) -> list:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]


_DISTRIBUTION = re.compile(r"^(loguniform|uniform|int|choice)\((.*)\)$")


def parse_space(items: list[str]) -> dict[str, optuna.distributions.BaseDistribution]:
    """`key=loguniform(5e-5,2e-3)` etc. -> Optuna distributions keyed by config key."""
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for item in items:
        key, text = _split(item, "--space")
        match = _DISTRIBUTION.match(text.strip())
        if not match:
            raise ConfigError(
                key, f"--space {item!r}: expected loguniform(a,b), uniform(a,b), int(a,b) or choice(a,b,...)"
            )
        kind, args = match.group(1), [a.strip() for a in match.group(2).split(",") if a.strip()]
        try:
            space[key] = _distribution(kind, args)
        except (ValueError, TypeError) as exc:
            raise ConfigError(key, f"--space {item!r}: {exc}") from None
    _no_repeats(list(space))
    return space


def _distribution(kind: str, args: list[str]) -> optuna.distributions.BaseDistribution:
    if kind == "choice":
        if not args:
            raise ValueError("choice() needs at least one value")
        return optuna.distributions.CategoricalDistribution([typed(a) for a in args])
    if len(args) != 2:
        raise ValueError(f"{kind}() takes two bounds")
    if kind == "int":
        return optuna.distributions.IntDistribution(int(args[0]), int(args[1]))
    return optuna.distributions.FloatDistribution(float(args[0]), float(args[1]), log=kind == "loguniform")


def typed(text: str) -> object:
    """'4' -> 4, '1e-4' -> 0.0001, 'qv' -> 'qv' (Optuna params are typed, overrides stay text)."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _split(item: str, option: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(item, f"{option} items look like section.key=..., got {item!r}")
    key, _, rest = item.partition("=")
    return key.strip(), rest


def _no_repeats(keys: list[str]) -> None:
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(key, "given twice in the sweep's space")


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", value)
