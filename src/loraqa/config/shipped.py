"""The run configs shipped inside the package (src/loraqa/configs/*.yaml), found by name.

`loraqa train minilm-l6-squad` works from any directory; `configs/NAME.yaml`, the path the docs
used when the files sat at the repository root, still finds NAME when no such file exists here.
A real file always wins over a shipped name.
"""

from __future__ import annotations

import re
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "configs"
COMPARE_DIR = "compare"  # SHIPPED_DIR/compare: the configs of shipped comparisons (`loraqa compare SET`)


def shipped_configs() -> dict[str, Path]:
    """Shipped config name (file stem) -> path, sorted by name."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def compare_configs() -> dict[str, Path]:
    """The shipped comparison sets' configs (configs/compare/SET-*.yaml), name -> path, sorted."""
    return {p.stem: p for p in sorted((SHIPPED_DIR / COMPARE_DIR).glob("*.yaml"))}


def compare_sets() -> dict[str, list[str]]:
    """Comparison set name (the configs' common prefix, `offline`) -> its config names."""
    sets: dict[str, list[str]] = {}
    for name in compare_configs():
        sets.setdefault(name.split("-", 1)[0], []).append(name)
    return sets


def resolve_config_path(path: str) -> str:
    """`path` itself when it names an existing file, else the shipped config it names (a bare
    name, NAME.yaml or configs/NAME.yaml; a comparison set's config too), else `path` unchanged
    (the caller reports it missing)."""
    given = Path(path).expanduser()
    if given.is_file():
        return str(given)
    name = given.name[: -len(given.suffix)] if given.suffix in (".yaml", ".yml") else given.name
    parent = given.parent.as_posix()
    known = {**shipped_configs(), **compare_configs()}
    if parent in (".", "configs", f"configs/{COMPARE_DIR}") and name in known:
        return str(known[name])
    return path


def expand_compare_sets(items: list[str]) -> list[str]:
    """`loraqa compare offline`: a set's name stands for its configs (a real file or directory wins)."""
    sets = compare_sets()
    expanded = []
    for item in items:
        expanded += sets[item] if item in sets and not Path(item).exists() else [item]
    return expanded


def shipped_bases() -> list[str]:
    """The base models the shipped configs name (`model.name`), for suggesting close names."""
    import yaml

    names = []
    for path in shipped_configs().values():
        model = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model") or {}
        if isinstance(model.get("name"), str):
            names.append(model["name"])
    return names


def describe_shipped() -> str:
    """The shipped configs and comparison sets: each name with its description's first sentence."""
    lines = ["shipped configs (run one with `loraqa train NAME`; `loraqa configs --show NAME > my.yaml` to edit one):"]
    lines += [_entry(name, path) for name, path in shipped_configs().items()]
    lines.append("comparison sets (`loraqa compare SET --name NAME`; each config also runs alone by name):")
    for set_name, names in compare_sets().items():
        lines.append(_entry(set_name, compare_configs()[names[0]], f"{', '.join(names)}. "))
    return "\n".join(lines)


def show_config(name: str) -> str:
    """The text of shipped config NAME (comments included), to save and edit."""
    from loraqa.errors import ConfigError
    from loraqa.suggest import did_you_mean

    known = {**shipped_configs(), **compare_configs()}
    if name not in known:
        close = did_you_mean(name, known)
        raise ConfigError("configs --show", f"no shipped config named {name!r}{close} (`loraqa configs` lists them)")
    return known[name].read_text(encoding="utf-8")


def _entry(name: str, path: Path, prefix: str = "") -> str:
    """`  NAME  first sentence of the description`, wrapped under itself, never cut mid-sentence."""
    import textwrap

    comments = [
        line.lstrip("#").strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    ][1:]  # the first comment line is the command
    description = " ".join(line for line in comments if line)
    sentence = re.match(r"(.+?\.)(\s|$)", description)
    text = prefix + (sentence[1] if sentence else description)
    return textwrap.fill(text, width=110, initial_indent=f"  {name:<22} ", subsequent_indent=" " * 25)
