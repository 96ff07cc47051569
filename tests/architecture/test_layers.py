"""Layers only import downward (README "Layout"; STYLE.md): a lower layer never imports a higher one.

Every `import loraqa.X` / `from loraqa.X import ...` in src/loraqa, including imports inside
functions, is checked against LAYERS. Modules of one layer may import each other; nothing may
import upward. Reports read run directories only, so they never import a model-loading layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "loraqa"

# Bottom to top. A module is placed by its longest matching dotted prefix.
LAYERS: list[tuple[str, ...]] = [
    (
        "loraqa",
        "loraqa.errors",
        "loraqa.console",
        "loraqa.allocator",
        "loraqa.runs.atomic",
        "loraqa.input_files",
        "loraqa.device",
        "loraqa.families",
    ),
    ("loraqa.config", "loraqa.formulations.config_rules"),  # read when a config loads; imports no torch
    ("loraqa.data", "loraqa.metrics", "loraqa.runs"),
    ("loraqa.formulations",),
    ("loraqa.models",),
    ("loraqa.lora",),
    ("loraqa.training", "loraqa.evaluation", "loraqa.inference"),
    ("loraqa.pipeline", "loraqa.pipeline"),
    ("loraqa.experiments", "loraqa.export", "loraqa.sweeps", "loraqa.reports", "loraqa.serving", "loraqa.api"),
    ("loraqa.cli", "loraqa.cli_parser", "loraqa.__main__"),
]
# Reports read files only (STYLE: "it never trains or loads a model").
FORBIDDEN = {"loraqa.reports": ("loraqa.models", "loraqa.lora", "loraqa.training", "loraqa.formulations",
                                "loraqa.pipeline", "loraqa.inference")}  # fmt: skip


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "loraqa"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "loraqa":
                found.append((node.lineno, name))
    return found


def violations() -> list[str]:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        importer = module_name(path)
        for line, imported in imported_modules(path):
            if imported == "loraqa" or (importer == "loraqa" and imported == "loraqa.api"):
                continue  # the package itself sits at the bottom; its __init__ only re-exports the public API
            if layer_of(imported) > layer_of(importer):
                problems.append(
                    f"{path.relative_to(SRC.parent)}:{line}: {importer} imports {imported} (a higher layer)"
                )
            for owner, banned in FORBIDDEN.items():
                if importer.startswith(owner) and imported.startswith(banned):
                    problems.append(f"{path.relative_to(SRC.parent)}:{line}: {importer} must not import {imported}")
    return problems


def test_no_import_runs_against_the_layer_order():
    problems = violations()
    assert not problems, "\n".join(problems)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a config module importing training is reported."""
    fake = tmp_path / "loraqa"
    (fake / "config").mkdir(parents=True)
    (fake / "config" / "bad.py").write_text("def f():\n    from loraqa.training.trainer import QATrainer\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert any("loraqa.config.bad imports loraqa.training.trainer" in p for p in violations())


@pytest.mark.parametrize("module", ["loraqa.cli", "loraqa.config.schema", "loraqa.runs.atomic"])
def test_every_module_has_a_layer(module):
    layer_of(module)
