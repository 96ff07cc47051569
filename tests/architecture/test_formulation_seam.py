"""The formulation seam is closed: outside `src/loraqa/formulations/`, no code names a formulation.

Facts about one formulation (its config rules, prompts, loss, model class, usage notes) live in its
own module, so adding or changing one touches `formulations/` only. Every string literal of src/loraqa
outside that package is checked, docstrings and comments aside (they may explain, not decide).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "loraqa"
NAMES = re.compile(r"\b(extractive|seq2seq|causal)\b", re.IGNORECASE)

# (path under src/loraqa, literal): the few places a name must be spelled out, each with its reason.
ALLOWED = {
    # Below formulations/ (which imports it): the one list of names a user may write in a config.
    ("config/schema.py", "Literal[...]"): "FormulationName, the config's Literal of formulation names",
    # Words for people, no decision: the server's description and the offline models' listing.
    ("serving/app.py", "Extractive, seq2seq and causal question answering with LoRA adapters."): "API description",
    ("models/offline.py", "SmolLM2-135M-Instruct, Llama decoder (causal), Q4_1 weights dequantized to fp32"): "listing",
    ("models/offline.py", "all-MiniLM-L6-v2, 6-layer uncased BERT encoder (extractive), 22.7M params"): "listing",
}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _in_allowed_literals(tree: ast.AST, where: str) -> set[int]:
    """The constants inside `Literal[...]` in a file allowed to spell the names out there."""
    if (where, "Literal[...]") not in ALLOWED:
        return set()
    literals = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal"
    ]
    return {id(inner) for node in literals for inner in ast.walk(node)}


def formulation_names_outside_the_seam(src: Path = SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        if src / "formulations" in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(src).as_posix()
        skip = _docstrings(tree) | _in_allowed_literals(tree, where)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if NAMES.search(node.value) and (where, node.value) not in ALLOWED:
                    found.append(f"{where}:{node.lineno}: {node.value!r}")
    return found


def test_no_module_outside_formulations_names_a_formulation():
    assert formulation_names_outside_the_seam() == []


def test_the_check_sees_a_comparison_with_a_name(tmp_path):
    (tmp_path / "formulations").mkdir()
    (tmp_path / "formulations" / "causal.py").write_text('NAME = "causal"\n')  # inside the seam: fine
    (tmp_path / "validate.py").write_text('"""Extractive rules."""\n# causal\nif name == "extractive":\n    pass\n')
    assert formulation_names_outside_the_seam(tmp_path) == ["validate.py:3: 'extractive'"]
