"""`loraqa export --format onnx --int8`: the int8 variant is measured on the run's test questions against
the float export and the torch model, kept only within MAX_F1_LOSS and at MIN_SPEEDUP or faster (or with
--force, loudly), and answers through `--model`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import one_line_error, run_cli, tiny_overrides

import loraqa.export.int8 as int8


@pytest.fixture(scope="module")
def bert_adapter(tiny_model_dir, qa_files, tmp_path_factory) -> Path:
    from loraqa.cli import main

    out = tmp_path_factory.mktemp("bert") / "run"
    args = tiny_overrides(tiny_model_dir("bert"), qa_files, out, "evaluation.baseline=false", "training.max_steps=6")
    assert main(["train", *args, "--no-report"]) == 0
    return out / "adapter"


def _export(capsys, adapter: Path, output: Path, *extra: str):
    return run_cli(
        capsys, "export", "--adapter", str(adapter), "--format", "onnx", "--int8", "--output", str(output), *extra
    )


def test_the_first_recipe_within_the_bar_is_written_with_its_figures(bert_adapter, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(int8, "MAX_F1_LOSS", 100.0)  # any recipe passes: the fastest one is kept
    monkeypatch.setattr(int8, "MIN_SPEEDUP", 0.0)
    code, out, err = _export(capsys, bert_adapter, tmp_path / "onnx")
    assert code == 0, err
    figures = json.loads((tmp_path / "onnx" / "int8" / "int8_figures.json").read_text())
    assert figures["recipe"] == int8.RECIPES[0].name and len(figures["tried"]) == 1
    assert figures["questions"] == 8 and "answers_per_cpu_second" in figures["int8"]
    assert figures["torch_fp32"]["f1"] == pytest.approx(figures["float"]["f1"]), "torch and ONNX give the same answers"
    assert "int8 (dynamic-per-channel): F1" in out and "x torch fp32's answers per CPU second" in out
    code, out, err = run_cli(
        capsys,
        "predict",
        "--model",
        str(tmp_path / "onnx" / "int8"),
        "--question",
        "Who founded Avalon?",
        "--context",
        "The town of Avalon was founded in 1800 by Ada.",
    )
    assert code == 0 and "confidence" in out, err


def test_a_recipe_losing_more_than_the_bar_is_refused_or_forced(bert_adapter, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(int8, "MAX_F1_LOSS", -1.0)  # no recipe can pass
    monkeypatch.setattr(int8, "MIN_SPEEDUP", 0.0)
    code, _, err = _export(capsys, bert_adapter, tmp_path / "refused")
    line = one_line_error(err)
    assert code == 2 and "--int8: the best recipe" in line and "--force writes the int8 variant anyway" in line
    assert (tmp_path / "refused" / "model.onnx").is_file() and not (tmp_path / "refused" / "int8").exists()
    assert not [p for p in tmp_path.iterdir() if ".int8-" in p.name], "no candidate left behind"

    code, _, err = _export(capsys, bert_adapter, tmp_path / "forced", "--force")
    assert code == 0 and "WARNING: int8 written only because of --force: the best recipe" in err and "loses" in err
    figures = json.loads((tmp_path / "forced" / "int8" / "int8_figures.json").read_text())
    assert len(figures["tried"]) == len(int8.RECIPES)


def test_a_recipe_no_faster_than_torch_by_the_bar_is_refused_or_forced(bert_adapter, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(int8, "MAX_F1_LOSS", 100.0)  # F1 passes, speed cannot
    monkeypatch.setattr(int8, "MIN_SPEEDUP", 1000.0)
    code, _, err = _export(capsys, bert_adapter, tmp_path / "slow")
    line = one_line_error(err)
    assert code == 2 and "as many questions per CPU second as torch fp32 on this machine" in line
    assert "(the bar is 1000.0x" in line and "--force writes the int8 variant anyway" in line
    assert (tmp_path / "slow" / "model.onnx").is_file() and not (tmp_path / "slow" / "int8").exists()

    code, _, err = _export(capsys, bert_adapter, tmp_path / "forced", "--force")
    assert code == 0 and "WARNING: int8 written only because of --force: the best recipe" in err
    figures = json.loads((tmp_path / "forced" / "int8" / "int8_figures.json").read_text())
    assert figures["min_speedup_over_torch"] == 1000.0 and figures["speedup_over_torch"] < 1000.0
