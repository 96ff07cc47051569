"""Load a `RunConfig` from YAML plus `key=value` overrides, checking every key and type up front.

Nothing here loads a model: all errors surface before any slow work starts, each as a one-line
`ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from loraqa.atomic import write_text_atomic
from loraqa.config.schema import RunConfig, default_doc_stride, record_set_keys, set_by_user
from loraqa.config.shipped import compare_configs, resolve_config_path, shipped_configs
from loraqa.config.validate import validate_config
from loraqa.errors import ConfigError
from loraqa.input_files import MAX_CONFIG_BYTES, DuplicateKeyError, input_file_problem
from loraqa.suggest import close_matches, did_you_mean


def load_config(path: str | None, overrides: list[str] | None = None) -> RunConfig:
    """Build a validated RunConfig from an optional YAML file (or a shipped config's name, see
    `config.shipped`) and `section.key=value` overrides."""
    return build_config(read_config_file(path), overrides)


def read_config_file(path: str | None) -> dict[str, Any]:
    """The YAML file's mapping, unchecked ({} for no file): to build several configs from one read."""
    return {} if path is None else _read_yaml(resolve_config_path(path))


def build_config(raw: dict[str, Any], overrides: list[str] | None = None) -> RunConfig:
    """A validated RunConfig from a file's mapping (left unchanged) and overrides."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        _apply_override(raw, item)
    config = _build(RunConfig, raw, prefix="")
    model = config.model
    if model.doc_stride >= model.max_seq_length and not set_by_user(model, "doc_stride"):
        model.doc_stride = default_doc_stride(model.max_seq_length)  # the default follows a shorter window
    validate_config(config)
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (the run directory keeps what actually ran)."""
    write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when built with it


class _UniqueKeyLoader(_SafeLoader):
    """YAML's safe loader, refusing a mapping that gives one key twice (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may be overridden by the keys beside it: that is what it is for
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):  # an unhashable key is the base loader's error
                if key in seen:
                    raise DuplicateKeyError(key)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def _read_yaml(path: str) -> dict[str, Any]:
    problem = input_file_problem(path, MAX_CONFIG_BYTES)
    if problem == "file not found":
        names = ", ".join(shipped_configs())
        close = did_you_mean(Path(path).name.removesuffix(".yaml"), {**shipped_configs(), **compare_configs()})
        raise ConfigError("config", f"file not found: {path}{close} (shipped configs, by name: {names})")
    if problem:
        raise ConfigError("config", f"{path} {problem}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError("config", f"{path} cannot be read ({exc.strerror or exc})") from None
    try:
        data = _safe_load(text)
    except DuplicateKeyError as exc:
        raise ConfigError("config", f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError("config", f"{path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(item, "an override must look like section.key=value")
    dotted, _, text = item.partition("=")
    keys = dotted.strip().split(".")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(dotted, f"'{key}' is not a section")
        node = child
    try:
        value = _safe_load(text) if text.strip() else None
    except DuplicateKeyError as exc:
        raise ConfigError(dotted, str(exc)) from None
    except yaml.YAMLError:
        value = text
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("{", "[")):
        value = text  # `data.train=hub:` is the text "hub:", not YAML's block mapping {"hub": None}
    node[keys[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "config", "must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(prefix + str(key), _unknown_key(prefix, str(key), known))
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        key = prefix + f.name
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, raw[f.name] or {}, key + ".")
        else:
            values[f.name] = _coerce(raw[f.name], hint, key)
    built = cls(**values)
    record_set_keys(built, raw)
    return built


def _unknown_key(prefix: str, key: str, known: set[str]) -> str:
    """'unknown key; did you mean ...?': the same key in another section (`training.lora_alpha`), else
    a close one in this section; else the known keys."""
    elsewhere = [f"{section}.{name}" for section, name in _all_keys() if name == key] if prefix else []
    if elsewhere:
        return f"unknown key; did you mean {' or '.join(map(repr, elsewhere))}?"
    close = close_matches(key, known)
    if close:
        return f"unknown key; did you mean {' or '.join(repr(prefix + name) for name in close)}?"
    return f"unknown key (known: {', '.join(sorted(known))})"


def _all_keys() -> list[tuple[str, str]]:
    """(section, key) for every key of every section."""
    sections = typing.get_type_hints(RunConfig).items()
    return [
        (name, f.name) for name, hint in sections if dataclasses.is_dataclass(hint) for f in dataclasses.fields(hint)
    ]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Return value as type `hint`, or raise ConfigError naming the key and the expected type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        errors = []
        # None first, then the most specific alternatives, so "8" stays an int where int is allowed.
        for alternative in sorted(args, key=_union_rank):
            try:
                return _coerce(value, alternative, key)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(key, f"expected {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if value is False and "no" in args:
            value = "no"  # YAML 1.1 reads a bare `no` as false: `save_strategy: no` means "no"
        if value in args and type(value) is type(args[args.index(value)]):
            return value
        close = did_you_mean(value, [a for a in args if isinstance(a, str)]) if isinstance(value, str) else ""
        raise ConfigError(key, f"must be one of {', '.join(map(repr, args))}, got {value!r}{close}")
    if origin is list:
        if isinstance(value, str):  # `key=a,b` on the command line
            value = [_scalar(v.strip(), args[0]) for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        raise ConfigError(key, "expected null")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" as a string; users write it that way, so accept it.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}")
    raise ConfigError(key, f"unsupported type {hint}")  # a schema bug, not a user error


def _scalar(text: str, hint: Any) -> Any:
    """One item of a comma-separated override: `layers_to_transform=3,4,5` means integers."""
    if hint is int and text.lstrip("-").isdigit():
        return int(text)
    return text


def _union_rank(alternative: Any) -> int:
    order = {type(None): 0, bool: 1, int: 2, float: 3}
    if typing.get_origin(alternative) is Literal:
        return 1
    return order.get(alternative, 5)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )
