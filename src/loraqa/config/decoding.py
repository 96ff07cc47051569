"""Decoding presets: short names for the `generate()` settings the seeds compared.

`greedy`, `beamN` (beam search, N beams), `topkK` (sampling from the K most likely tokens),
`toppP` (nucleus sampling with mass P), `tempT` (sampling at temperature T).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from loraqa.errors import ConfigError, FlagError

# Each pattern and the generate() kwargs its captured number builds.
_PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[str], dict]]] = {
    "beam": (re.compile(r"^beam(\d+)$"), lambda v: {"num_beams": int(v), "do_sample": False}),
    "topk": (re.compile(r"^topk(\d+)$"), lambda v: {"do_sample": True, "top_k": int(v), "top_p": 1.0}),
    "topp": (re.compile(r"^topp(0?\.\d+|1(\.0+)?)$"), lambda v: {"do_sample": True, "top_p": float(v), "top_k": 0}),
    "temp": (re.compile(r"^temp(\d+(\.\d+)?)$"), lambda v: {"do_sample": True, "temperature": float(v), "top_k": 0}),
}


# The sane range of each number, inclusive; outside it a decoding is a typo or an attack, not a
# setting. Why these bounds: beams cost time and memory each, and SQuAD's short answers settle with
# a few (a server caps them lower, serving/settings.py); sampling among more than the 1,000 likeliest
# tokens is sampling among all of them in practice (tempT says so plainly), and topk0 is no top-k;
# a nucleus of mass 0 holds no token; below temperature 0.01 sampling is greedy decoding, above 10 a
# near-uniform draw over the vocabulary.
MAX_NAME_CHARS = 40
RANGES = {"num_beams": (1, 64), "top_k": (1, 1000), "top_p": (0.01, 1.0), "temperature": (0.01, 10.0)}


def parse_decoding(name: str, key: str = "decoding") -> dict:
    """Return the `generate()` keyword arguments for a preset name, or raise ConfigError (FlagError
    for a `--flag` key) naming an unknown preset or a number outside its RANGES."""
    name = name.strip()
    if name == "greedy":
        return {"do_sample": False, "num_beams": 1}
    error = FlagError if key.startswith("-") else ConfigError
    if len(name) > MAX_NAME_CHARS:  # thousands of digits are no number int() reads, and no decoding
        raise error(key, f"unknown decoding {name[:MAX_NAME_CHARS]!r}... (longer than {MAX_NAME_CHARS} characters)")
    for kind, (pattern, build) in _PATTERNS.items():
        match = pattern.match(name)
        if match:
            kwargs = build(match.group(1))
            _check_range(kwargs, RANGE_OF[kind], name, key, error)
            return kwargs
    raise error(
        key,
        f"unknown decoding {name!r} (use greedy, beamN, topkK, toppP or tempT, e.g. beam4, topk50, topp0.95, temp1.3)",
    )


RANGE_OF = {"beam": "num_beams", "topk": "top_k", "topp": "top_p", "temp": "temperature"}


def describe_ranges() -> str:
    """The RANGES in words, as `loraqa config` shows them."""
    letters = {"beam": "N", "topk": "K", "topp": "P", "temp": "T"}
    return "; ".join(
        f"{kind}{letters[kind]}: {letters[kind]} in [{RANGES[s][0]:g}, {RANGES[s][1]:g}]"
        for kind, s in RANGE_OF.items()
    )


def _check_range(kwargs: dict, setting: str, name: str, key: str, error: type[ConfigError]) -> None:
    low, high = RANGES[setting]
    if not low <= kwargs[setting] <= high:
        raise error(key, f"decoding {name!r}: {setting} must be in [{low:g}, {high:g}], got {kwargs[setting]:g}")


def parse_decoding_list(text: str) -> list[str]:
    """Split `greedy,beam4,...` and check each name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise FlagError("--decoding", "give at least one decoding")
    for name in names:
        parse_decoding(name, key="--decoding")
    return names
