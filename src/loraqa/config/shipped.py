"""The run configs shipped inside the package (src/loraqa/configs/*.yaml), found by name.

`loraqa train minilm-l6-squad` works from any directory; `configs/NAME.yaml`, the path the docs
used when the files sat at the repository root, still finds NAME when no such file exists here.
A real file always wins over a shipped name.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """Shipped config name (file stem) -> path, sorted by name."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def resolve_config_path(path: str) -> str:
    """`path` itself when it names an existing file, else the shipped config it names (a bare
    name, NAME.yaml or configs/NAME.yaml), else `path` unchanged (the caller reports it missing)."""
    given = Path(path).expanduser()
    if given.is_file():
        return str(given)
    name = given.name[: -len(given.suffix)] if given.suffix in (".yaml", ".yml") else given.name
    parent = given.parent.as_posix()
    if parent in (".", "configs") and name in shipped_configs():
        return str(shipped_configs()[name])
    return path


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
    """The shipped configs, one line each: the name and the first line of its description."""
    lines = [f"shipped configs in {SHIPPED_DIR} (run one with `loraqa train NAME`; copy one to edit it):"]
    for name, path in shipped_configs().items():
        comments = [
            line.lstrip("# ").rstrip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")
        ]
        lines.append(f"  {name:<22} {comments[1] if len(comments) > 1 else ''}")
    return "\n".join(lines)
