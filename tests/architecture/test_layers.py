"""Layers only import downward, and no modules import each other in a circle (docs/architecture.md).

Every `import loraqa.X` / `from loraqa.X import ...` in src/loraqa, including imports inside
functions and type-checking blocks, is checked: against LAYERS (modules of one layer may import each
other; nothing imports upward, with no exceptions), against FORBIDDEN (reports never reach a model
layer), and for cycles between modules (a cycle is a tangle even within one layer: neither module
can be read, tested or moved without the other).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "loraqa"
ROOT_PACKAGE = "loraqa"  # its __init__ re-exports the public API (loraqa.api), so it sits at the top

# Bottom to top. A module is placed by its longest matching dotted prefix.
LAYERS: list[tuple[str, ...]] = [
    (  # ground floor: services with no loraqa imports above them
        "loraqa.version",
        "loraqa.errors",
        "loraqa.console",
        "loraqa.allocator",
        "loraqa.atomic",
        "loraqa.distributed",
        "loraqa.input_files",
        "loraqa.device",
        "loraqa.families",
        "loraqa.suggest",  # close-match "did you mean" for every layer's errors
    ),
    ("loraqa.config", "loraqa.formulations.config_rules"),  # read when a config loads; imports no torch
    ("loraqa.data", "loraqa.metrics", "loraqa.runs"),
    ("loraqa.formulations",),
    ("loraqa.models",),
    ("loraqa.lora",),
    ("loraqa.training", "loraqa.inference"),
    ("loraqa.pipeline",),
    ("loraqa.experiments", "loraqa.export", "loraqa.sweeps", "loraqa.reports", "loraqa.serving", "loraqa.api"),
    ("loraqa.cli", "loraqa.cli_parser", "loraqa.cli_checks", "loraqa.cli_interrupt", "loraqa.__main__", ROOT_PACKAGE),
]
# Reports read run directories through runs/ and never load a model: no model layer below them.
FORBIDDEN = {
    "loraqa.reports": (
        "loraqa.models",
        "loraqa.lora",
        "loraqa.training",
        "loraqa.formulations",
        "loraqa.pipeline",
        "loraqa.inference",
    )
}


def layer_of(module: str) -> int:
    if module == ROOT_PACKAGE:
        return len(LAYERS) - 1
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (
                prefix != ROOT_PACKAGE
                and (module == prefix or module.startswith(prefix + "."))
                and len(prefix) > best_len
            ):
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for each loraqa import in `path`; `from package import module` names the module."""
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
            if name.split(".")[0] != "loraqa":
                continue
            for alias in node.names:
                submodule = f"{name}.{alias.name}"
                found.append((node.lineno, submodule if submodule in known else name))
    return found


def import_graph() -> dict[str, list[tuple[int, str]]]:
    found = modules()
    return {name: imported_modules(path, set(found)) for name, path in found.items()}


def violations() -> list[str]:
    problems = []
    paths = modules()
    for importer, imports in import_graph().items():
        where = paths[importer].relative_to(SRC.parent)
        for line, imported in imports:
            if layer_of(imported) > layer_of(importer):
                problems.append(f"{where}:{line}: {importer} imports {imported} (a higher layer)")
            for owner, banned in FORBIDDEN.items():
                if importer.startswith(owner) and imported.startswith(banned):
                    problems.append(f"{where}:{line}: {importer} must not import {imported}")
    return problems


def cycles() -> list[list[str]]:
    """Each set of modules that import each other in a circle (Tarjan's strongly connected components)."""
    graph = {name: sorted({m for _, m in imports if m != name}) for name, imports in import_graph().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, []):
            if successor not in graph:
                continue  # not a module of the package (a missing one fails the import itself)
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_runs_against_the_layer_order():
    problems = violations()
    assert not problems, "\n".join(problems)


def test_no_modules_import_each_other_in_a_circle():
    found = cycles()
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def _fake_package(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    fake = tmp_path / "loraqa"
    for name, text in files.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    monkeypatch.setattr(__import__(__name__), "SRC", fake)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a config module importing training is reported."""
    _fake_package(
        tmp_path, monkeypatch, {"config/bad.py": "def f():\n    from loraqa.training.trainer import QATrainer\n"}
    )
    assert any("loraqa.config.bad imports loraqa.training.trainer" in p for p in violations())


def test_the_check_sees_a_cycle_inside_one_layer(tmp_path, monkeypatch):
    """Two report modules importing each other (one lazily, one by `from package import module`) are a cycle."""
    _fake_package(
        tmp_path,
        monkeypatch,
        {
            "reports/__init__.py": "",
            "reports/a.py": "def f():\n    from loraqa.reports import b\n",
            "reports/b.py": "from loraqa.reports.a import f\n",
            "reports/c.py": "from loraqa.reports.a import f\n",
        },
    )
    assert cycles() == [["loraqa.reports.a", "loraqa.reports.b"]]
    assert not violations()  # same layer: only the cycle check catches it


@pytest.mark.parametrize("module", ["loraqa.cli", "loraqa.config.schema", "loraqa.atomic", "loraqa.runs.summary"])
def test_every_module_has_a_layer(module):
    layer_of(module)


def test_every_module_in_the_package_has_a_layer():
    for name in modules():
        layer_of(name)
