"""The site's reference pages are generated from the code (scripts/gen_reference.py) and must equal
what the code generates now: a config key, command or flag added without rerunning the generator
fails here, with the command that fixes it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from loraqa.cli_parser import build_parser
from loraqa.config.schema import RunConfig

REPO = Path(__file__).resolve().parents[2]
FIX = "run `python scripts/gen_reference.py` and commit docs/reference/"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_reference_pages_equal_what_the_code_generates(generator):
    for path, text in generator.pages().items():
        assert path.is_file(), f"{path.relative_to(REPO)} is missing: {FIX}"
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(REPO)} is stale: {FIX}"


def test_every_config_key_is_on_the_config_page_with_its_default(generator):
    page = generator.config_page()
    root = RunConfig()
    for section in ("data", "model", "lora", "training", "evaluation", "generation"):
        for key, value in vars(getattr(root, section)).items():
            row = next((line for line in page.splitlines() if line.startswith(f"| `{section}.{key}` |")), None)
            assert row, f"{section}.{key} is not on the config page"
            assert f"`{generator.cell(generator.yaml_value(value))}`" in row, row
    assert "| `training.learning_rate` | float | `0.0002` |" in page
    assert "in (0, 1]" in page  # validate.py's documented range
    assert "rsLoRA: scale the update by lora_alpha / sqrt(r)" in page  # the schema's own comment


def test_every_command_and_flag_is_on_the_commands_page(generator):
    page = generator.cli_page()
    parser = build_parser()
    commands = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    for name, sub in commands.items():
        assert f"\n## loraqa {name}\n" in page, name
        section = page.split(f"\n## loraqa {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            if action.help == "==SUPPRESS==" or "-h" in action.option_strings:
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in section or f", {flag}" in section, f"loraqa {name} {flag} is not on the page"
    assert "--torch-threads" not in page  # a hidden (argparse.SUPPRESS) flag stays hidden


def test_field_comments_read_the_schema_lines_above_and_beside(generator):
    source = """
class A:
    # why, line one
    # line two
    x: int = 1  # beside
    y: str = "a # not a comment"
"""
    comments = generator.field_comments(source)
    assert comments[("A", "x")] == "why, line one line two beside"
    assert comments[("A", "y")] == ""
