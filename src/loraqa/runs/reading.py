"""Lenient readers of the files a run directory holds, and `flatten` for its config.

Every file a run writes is optional to its readers (a run stops where it was killed): a missing file
reads as None (or no entries), an unreadable one also, with one line saying why appended to
`problems` when the caller collects them (reports show them instead of stopping).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def read_json(path: Path, problems: list[str] | None = None) -> Any:
    """The JSON value in `path`; None when it is missing or unreadable (said in `problems`)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        _note(problems, f"{path.name} unreadable ({exc})")
        return None


def read_jsonl(path: Path, problems: list[str] | None = None) -> list[dict]:
    """One JSON object per line; a bad line (a run killed mid-write) is skipped and counted."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        _note(problems, f"{path.name} unreadable ({exc})")
        return []
    entries, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            bad += 1
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            bad += 1
    if bad:
        _note(problems, f"{path.name}: {bad} unreadable line(s) skipped")
    return entries


def read_yaml_mapping(path: Path, problems: list[str] | None = None) -> dict | None:
    """The mapping in a YAML file (a run's config.yaml); None when unreadable or not a mapping."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        _note(problems, f"{path.name} unreadable ({str(exc).splitlines()[0]})")
        return None
    if not isinstance(data, dict):
        _note(problems, f"{path.name} is not a mapping")
        return None
    return data


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"lora": {"r": 8}} -> {"lora.r": 8}: config keys as `key=value` overrides spell them."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _note(problems: list[str] | None, line: str) -> None:
    if problems is not None:
        problems.append(line)
