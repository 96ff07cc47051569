"""Decoding presets: short names for the `generate()` settings the seeds compared.

`greedy`, `beamN` (beam search, N beams), `topkK` (sampling from the K most likely tokens),
`toppP` (nucleus sampling with mass P), `tempT` (sampling at temperature T).
"""

from __future__ import annotations

import re

from loraqa.errors import ConfigError, FlagError

_PATTERNS = {
    "beam": (re.compile(r"^beam(\d+)$"), lambda v: {"num_beams": int(v), "do_sample": False}),
    "topk": (re.compile(r"^topk(\d+)$"), lambda v: {"do_sample": True, "top_k": int(v), "top_p": 1.0}),
    "topp": (re.compile(r"^topp(0?\.\d+|1(\.0+)?)$"), lambda v: {"do_sample": True, "top_p": float(v), "top_k": 0}),
    "temp": (re.compile(r"^temp(\d+(\.\d+)?)$"), lambda v: {"do_sample": True, "temperature": float(v), "top_k": 0}),
}


def parse_decoding(name: str, key: str = "decoding") -> dict:
    """Return the `generate()` keyword arguments for a preset name, or raise ConfigError."""
    name = name.strip()
    if name == "greedy":
        return {"do_sample": False, "num_beams": 1}
    for pattern, build in _PATTERNS.values():
        match = pattern.match(name)
        if match:
            kwargs = build(match.group(1))
            if kwargs.get("num_beams", 1) < 1 or kwargs.get("temperature", 1.0) <= 0 or kwargs.get("top_k", 1) < 0:
                break
            return kwargs
    error = FlagError if key.startswith("-") else ConfigError
    raise error(
        key,
        f"unknown decoding {name!r} (use greedy, beamN, topkK, toppP or tempT, e.g. beam4, topk50, topp0.95, temp1.3)",
    )


def parse_decoding_list(text: str) -> list[str]:
    """Split `greedy,beam4,...` and check each name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise FlagError("--decoding", "give at least one decoding")
    for name in names:
        parse_decoding(name, key="--decoding")
    return names
