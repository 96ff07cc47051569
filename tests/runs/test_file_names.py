"""runs/files.py is the one home of the run directory's file names: no other module spells one."""

from __future__ import annotations

import ast
from pathlib import Path

from loraqa.runs import files

SRC = Path(__file__).resolve().parents[2] / "src" / "loraqa"
ROOT = SRC.parents[1]
HOME = SRC / "runs" / "files.py"
# Names with an extension (or the report's folder): a bare word such as "adapter" is also a label or a key.
NAMES = {
    value
    for name, value in vars(files).items()
    if name.isupper() and isinstance(value, str) and ("." in value.strip(".") or value == files.REPORT_FILES_DIR)
}


def spelled_names(folders: list[Path]) -> list[str]:
    """`path:line: "name"` for each string literal in the folders' modules that is a run-directory file name."""
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            if path == HOME:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in NAMES:
                    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    found.append(f"{shown}:{node.lineno}: {node.value!r}")
    return found


def test_names_are_collected():
    assert {
        "summary.json",
        "metrics.json",
        "train_log.jsonl",
        "config.yaml",
        "loraqa.json",
        "predictions.jsonl",
        "sweep.json",
        "report_files",
    } <= NAMES


def test_no_module_outside_runs_files_spells_a_run_file_name():
    found = spelled_names([SRC, ROOT / "bench"])
    assert not found, "import the name from loraqa.runs.files instead:\n" + "\n".join(found)


def test_the_scan_sees_a_spelled_name(tmp_path):
    (tmp_path / "reader.py").write_text('"""Reads summary.json."""\nSUMMARY = "summary.json"\n')
    assert spelled_names([tmp_path]) == [f"{tmp_path / 'reader.py'}:2: 'summary.json'"]  # the docstring is prose
