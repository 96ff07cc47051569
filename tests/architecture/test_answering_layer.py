"""Every entry point reaches a model to answer through one function: `inference.ready.load_for_answering`.

The CLI, the Python API, the server and comparisons (and inference/'s own command modules) import
nothing that loads weights: no `loraqa.models`, no peft, no loader by name; they construct no
`ReadyModel` and call no `from_pretrained`. Loading lives in `inference/ready.py` (and, for adapters
sharing one base in the server, `inference/shared_base.py`), where `load_ready_model` has a single
caller, `load_for_answering`. Each answering entry point calls it. Checked on the source (AST).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "loraqa"

# The modules that answer for a user: everything under these paths (relative to src/loraqa).
ENTRY_POINTS = ("cli.py", "cli_parser.py", "api.py", "serving", "experiments", "export", "inference")
# Where a model to answer with is loaded: the one function and the server's shared-base attachments.
LOADERS = ("inference/ready.py", "inference/shared_base.py", "inference/onnx_model.py")  # onnx: an export's loader
BANNED_MODULES = ("loraqa.models", "peft")
# Loading steps by name: whoever needs one calls load_for_answering (or answer_setup) instead.
BANNED_NAMES = {
    "load_ready_model",
    "model_config_for_adapter",
    "inspect_base",
    "plan_device",
    "load_model",
    "load_tokenizer",
    "load_adapter_tokenizer",
    "load_adapter",
    "base_named_by_adapter",
}
BANNED_CALLS = {"from_pretrained", "merge_and_unload", "add_adapter", "load_adapter", "ReadyModel"}
# The entry points that load a model to answer, each through load_for_answering.
MUST_CALL = ("cli.py", "api.py", "serving/registry.py", "inference/eval_command.py", "export/command.py")


def _python_files(paths) -> list[Path]:
    files = []
    for name in paths:
        path = SRC / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return files


def _called_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def loading_outside_the_loader(path: Path) -> list[str]:
    """What in `path` loads a model itself (imports, names and calls), as `file:line: what`."""
    where = path.relative_to(SRC).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"imports {a.name}") for a in node.names if a.name.startswith(BANNED_MODULES)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith(BANNED_MODULES):
                found.append((node.lineno, f"imports {module}"))
            found += [(node.lineno, f"imports {a.name}") for a in node.names if a.name in BANNED_NAMES]
        elif isinstance(node, ast.Call) and _called_name(node) in BANNED_CALLS:
            found.append((node.lineno, f"calls {_called_name(node)}"))
    return [f"{where}:{line}: {what}" for line, what in found]


def calls(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.Call) and _called_name(node) == name for node in ast.walk(tree))


def test_entry_points_load_nothing_themselves():
    loaders = {SRC / name for name in LOADERS}
    problems = [
        p for path in _python_files(ENTRY_POINTS) if path not in loaders for p in loading_outside_the_loader(path)
    ]
    assert not problems, "load through inference.ready.load_for_answering:\n" + "\n".join(problems)


@pytest.mark.parametrize("entry", MUST_CALL)
def test_each_answering_entry_point_loads_through_load_for_answering(entry):
    assert calls(SRC / entry, "load_for_answering"), f"{entry} no longer loads through load_for_answering"


def test_load_ready_model_has_one_caller():
    """In all of src/loraqa, only `load_for_answering` (inference/ready.py) calls load_ready_model."""
    callers = [path.relative_to(SRC).as_posix() for path in SRC.rglob("*.py") if calls(path, "load_ready_model")]
    assert callers == ["inference/ready.py"]
    ready = ast.parse((SRC / "inference" / "ready.py").read_text(encoding="utf-8"))
    functions = [
        node.name
        for node in ast.walk(ready)
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(c, ast.Call) and _called_name(c) == "load_ready_model" for c in ast.walk(node))
    ]
    assert functions == ["load_for_answering"]


def test_the_check_sees_a_server_loading_a_model(tmp_path, monkeypatch):
    """The check itself can fail: a serving module that loads a base and builds a ReadyModel is reported."""
    fake = tmp_path / "loraqa"
    (fake / "serving").mkdir(parents=True)
    (fake / "serving" / "bad.py").write_text(
        "from loraqa.models.loading import inspect_base\n"
        "def f(config):\n"
        "    from loraqa.inference.ready import ReadyModel, load_ready_model\n"
        "    return ReadyModel(AutoModel.from_pretrained(config.name), None, inspect_base(config), config, None)\n"
    )
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert sorted(loading_outside_the_loader(fake / "serving" / "bad.py")) == [
        "serving/bad.py:1: imports inspect_base",
        "serving/bad.py:1: imports loraqa.models.loading",
        "serving/bad.py:3: imports load_ready_model",
        "serving/bad.py:4: calls ReadyModel",
        "serving/bad.py:4: calls from_pretrained",
    ]
