"""The command line itself: where overrides may go, how flag errors read, shipped configs by name,
and which library warnings reach the user. Nothing here loads a model."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from loraqa.cli import _peft_as_notes, _quiet_libraries, main, parse_command_line
from loraqa.config.loader import load_config


def error_line(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("loraqa: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_overrides_may_follow_a_flag():
    args = parse_command_line(["train", "lora.r=4", "--overwrite", "training.max_steps=2", "lora.r=8"])
    assert args.overwrite and [args.config, *args.overrides] == ["lora.r=4", "training.max_steps=2", "lora.r=8"]
    args = parse_command_line(["eval", "x.yaml", "a.b=1", "--output", "o", "c.d=2", "--overwrite", "e.f=3"])
    assert (args.config, args.overrides, args.output) == ("x.yaml", ["a.b=1", "c.d=2", "e.f=3"], "o")
    args = parse_command_line(["predict", "--question", "q", "generation.max_new_tokens=4", "--context", "c", "a=1"])
    assert args.overrides == ["generation.max_new_tokens=4", "a=1"]


def test_an_unknown_flag_or_stray_word_is_still_refused(capsys):
    for argv in (
        ["train", "a.b=1", "--bogus"],
        ["train", "a.b=1", "--overwrite", "stray"],
        ["report", "somedir", "x=1"],
    ):
        with pytest.raises(SystemExit) as done:
            parse_command_line(argv)
        assert done.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err


def test_flag_errors_name_the_flag_not_a_config_key(capsys):
    line = error_line(capsys, "predict", "--question", "Who?")
    assert line.startswith("loraqa: error: --context: ") and "config key" not in line
    line = error_line(capsys, "eval", "--decoding", "beam-x")
    assert line.startswith("loraqa: error: --decoding: unknown decoding 'beam-x'")


def test_shipped_configs_are_found_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert load_config("minilm-l6-squad").name == "minilm-l6-squad"
    assert load_config("configs/gpt2-squad.yaml").name == "gpt2-squad"  # the path the docs use
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "gpt2-squad.yaml").write_text("name: mine\n")
    assert load_config("configs/gpt2-squad.yaml").name == "mine"  # a real file wins
    line = error_line(capsys, "train", "minilm-l6-sqad")
    assert "file not found: minilm-l6-sqad" in line and "minilm-l6-squad" in line


def test_configs_command_lists_the_shipped_configs(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for name in ("minilm-l6-squad", "smollm2-135m-squad", "flan-t5-small-squad", "distilbert-squad-v2"):
        assert f"  {name} " in out


def test_shipped_configs_are_package_data():
    from pathlib import Path

    import tomllib

    from loraqa.config.shipped import SHIPPED_DIR

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["loraqa"]
    assert "configs/*.yaml" in globs and SHIPPED_DIR.parent.name == "loraqa" and any(SHIPPED_DIR.glob("*.yaml"))


def test_an_empty_hub_name_reads_as_one_line(capsys, tmp_path):
    line = error_line(capsys, "train", "data.train=hub:", f"output_dir={tmp_path}/r")
    assert line == (
        "loraqa: error: hub:: a hub source needs a dataset name: hub:NAME[:SPLIT], e.g. hub:rajpurkar/squad:validation"
    )


def test_peft_warnings_are_dropped_or_kept_as_one_line_notes(capsys):
    with warnings.catch_warnings():
        _quiet_libraries()

        def warn(text, module):
            warnings.warn_explicit(
                text, UserWarning, f"/site-packages/{module.replace('.', '/')}.py", 1, module=module, registry={}
            )

        warn(
            "Setting `save_embedding_layers` to `True` as the embedding layer has been resized.",
            "peft.utils.save_and_load",
        )
        warn("fan_in_fan_out is set to False but the target module is `Conv1D`.", "peft.tuners.lora.layer")
        warn("Found missing adapter keys while loading the checkpoint:\n ['a.lora_A']", "peft.peft_model")
    err = capsys.readouterr().err
    assert "save_embedding_layers" not in err and "fan_in_fan_out" not in err
    assert "loraqa: note: peft: Found missing adapter keys while loading the checkpoint: ['a.lora_A']\n" in err
    shown = []
    show = _peft_as_notes(lambda *args: shown.append(args[0]))
    show("something else", UserWarning, "/site-packages/mylib/x.py", 1)  # other libraries' warnings pass through
    assert shown == ["something else"]


def test_real_process_takes_overrides_after_a_flag(tmp_path):
    import os
    from pathlib import Path

    import loraqa

    source = str(Path(loraqa.__file__).parents[1])  # this checkout, from any working directory
    result = subprocess.run(
        [sys.executable, "-m", "loraqa", "train", "lora.r=4", "--overwrite", "lora.r=0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": source},
    )
    assert result.returncode == 2  # the second lora.r won, and was checked
    assert result.stderr.strip() == "loraqa: error: config key 'lora.r': the rank must be at least 1, got 0"
