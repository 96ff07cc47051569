"""`loraqa serve`'s one-line errors: the missing extra, bad --adapter values, nothing to serve."""

from __future__ import annotations

import importlib.util

from loraqa.cli import main
from loraqa.cli_parser import build_parser


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("loraqa: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_without_the_extra_it_says_what_to_install(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    assert main(["serve", "--adapter", "squad=runs/x/adapter"]) == 2
    assert "pip install loraqa[serve]" in error_line(capsys)


def test_bad_adapter_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["serve", "--adapter", "no-equals-sign"]) == 2
    assert "expected NAME=DIR" in error_line(capsys)
    assert main(["serve", "--adapter", f"a={tmp_path / 'missing'}"]) == 2
    assert "adapter directory not found" in error_line(capsys)
    assert main(["serve"]) == 2
    assert "nothing to serve" in error_line(capsys)


def test_same_name_twice_is_refused(trained_adapters, capsys):
    directory = trained_adapters["extractive"]
    assert main(["serve", "--adapter", f"a={directory}", "--adapter", f"a={directory}"]) == 2
    assert "given twice" in error_line(capsys)


def test_binds_loopback_by_default():
    args = build_parser().parse_args(["serve", "--adapter", "a=b"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.max_batch == 16


def test_timeouts_must_be_sane_numbers_of_seconds(capsys):
    for flag, value in [("--drain-timeout-s", "-1"), ("--drain-timeout-s", "inf"), ("--read-timeout-s", "0")]:
        assert main(["serve", "--adapter", "a=b", flag, value]) == 2
        assert flag in error_line(capsys)
