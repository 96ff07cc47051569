"""An adapter directory is data, never code: a real adapter made malicious is refused by every command.

The malicious adapter is a real trained one, then given what made the old loader run code: a
loraqa.json saying `trust_remote_code: true` and a tokenizer_config.json whose `auto_map` points at
a `tokenization_evil.py` that writes a marker file when imported. No command may import it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import one_line_error, run_cli, tiny_overrides

from loraqa.cli import main

QUESTION = ("--question", "Who founded Avalon?", "--context", "The town of Avalon was founded in 1800 by Ada.")


@pytest.fixture(scope="module")
def trained_bert(tiny_model_dir, qa_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("security") / "bert-run"
    args = tiny_overrides(tiny_model_dir("bert"), qa_files, out, "evaluation.baseline=false")
    assert main(["train", *args]) == 0
    return out / "adapter"


def make_malicious(adapter: Path, target: Path) -> Path:
    """A copy of `adapter` that asks for remote code; importing its tokenizer module writes `marker`."""
    shutil.copytree(adapter, target)
    marker = target.parent / f"{target.name}-code-ran.marker"
    (target / "tokenization_evil.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('the adapter ran code')\n"
        "from transformers import BertTokenizer\n"
        "class EvilTokenizer(BertTokenizer):\n    pass\n"
    )
    tokenizer_config = json.loads((target / "tokenizer_config.json").read_text())
    tokenizer_config["tokenizer_class"] = "EvilTokenizer"
    tokenizer_config["auto_map"] = {
        "AutoTokenizer": ["tokenization_evil.EvilTokenizer", "tokenization_evil.EvilTokenizer"]
    }
    (target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    meta = json.loads((target / "loraqa.json").read_text())
    meta["model_config"]["trust_remote_code"] = True
    (target / "loraqa.json").write_text(json.dumps(meta))
    return marker


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def evil(trained_bert, tmp_path):
    adapter = tmp_path / "evil-adapter"
    marker = make_malicious(trained_bert, adapter)
    before = snapshot(adapter)
    yield adapter, marker
    assert not marker.exists(), "the adapter's code ran"
    assert snapshot(adapter) == before  # nothing in the adapter directory was changed either


@pytest.mark.parametrize("trust", [None, "model.trust_remote_code=false"])
@pytest.mark.parametrize("command", ["predict", "eval", "merge", "serve", "serve-shared"])
def test_no_command_runs_an_adapters_code(evil, trained_bert, qa_files, tmp_path, capsys, command, trust):
    adapter, marker = evil
    extra = [trust] if trust else []
    if command == "predict":
        argv = ["predict", *extra, "--adapter", str(adapter), *QUESTION]
    elif command == "eval":
        argv = [
            "eval",
            f"data.test={qa_files['test']}",
            "training.device=cpu",
            *extra,
            "--adapter",
            str(adapter),
            "--output",
            str(tmp_path / "eval"),
        ]
    elif command == "serve":  # refused while the registry loads, before anything listens
        pytest.importorskip("fastapi")
        argv = ["serve", *extra, "--adapter", f"evil={adapter}", "--port", "1"]
    elif command == "serve-shared":  # joining a good adapter's base as a named peft adapter
        pytest.importorskip("fastapi")
        argv = ["serve", *extra, "--adapter", f"good={trained_bert}", "--adapter", f"evil={adapter}", "--port", "1"]
    else:
        argv = ["merge", *extra, "--adapter", str(adapter), "--output", str(tmp_path / "merged")]
    code, out, err = run_cli(capsys, *argv)
    line = one_line_error(err)
    assert code == 2
    assert "tokenizer_config.json: has an 'auto_map'" in line and "never runs code" in line, line
    assert not marker.exists()
    assert not (tmp_path / "eval").exists() and not (tmp_path / "merged").exists()


def test_trusting_the_base_does_not_trust_the_adapter(evil, tiny_model_dir, capsys):
    """model.trust_remote_code=true is about the base the user names, not the adapter's files."""
    adapter, marker = evil
    code, _, err = run_cli(
        capsys,
        "predict",
        "model.trust_remote_code=true",
        "--model",
        str(tiny_model_dir("bert")),
        "--adapter",
        str(adapter),
        *QUESTION,
    )
    assert code == 2 and "has an 'auto_map'" in one_line_error(err)
    assert not marker.exists()


def test_trust_remote_code_needs_a_base_the_user_names(trained_bert, capsys):
    code, _, err = run_cli(capsys, "predict", "model.trust_remote_code=true", "--adapter", str(trained_bert), *QUESTION)
    line = one_line_error(err)
    assert code == 2 and "model.trust_remote_code" in line and "--model" in line


def test_real_process_refuses_the_malicious_adapter(evil, tmp_path):
    adapter, marker = evil
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loraqa",
            "predict",
            "model.trust_remote_code=false",
            "--adapter",
            str(adapter),
            *QUESTION,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "has an 'auto_map'" in one_line_error(result.stderr)
    assert not marker.exists()


def test_the_adapters_trust_remote_code_is_ignored_with_a_note(trained_bert, tmp_path, capsys):
    """Without the auto_map, an adapter saying trust_remote_code=true answers with code off."""
    adapter = tmp_path / "says-trust"
    shutil.copytree(trained_bert, adapter)
    meta = json.loads((adapter / "loraqa.json").read_text())
    meta["model_config"]["trust_remote_code"] = True
    (adapter / "loraqa.json").write_text(json.dumps(meta))
    code, out, err = run_cli(capsys, "predict", "--adapter", str(adapter), *QUESTION)
    assert code == 0 and "confidence" in out
    assert "trust_remote_code=true; ignored" in err
    assert "trust_remote_code is ON" not in err  # the base was loaded without remote code


def _edit_json(name: str, change):
    def edit(adapter: Path) -> None:
        path = adapter / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


def _set(key_path: str, value):
    def change(data):
        node = data
        *parents, last = key_path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
        return data

    return change


def _remove(name: str):
    return lambda adapter: (adapter / name).unlink()


BAD_ADAPTERS = {
    "loraqa.json unknown key": (
        _edit_json("loraqa.json", _set("run_this", "x")),
        "loraqa.json: unknown key 'run_this'",
    ),
    "loraqa.json unknown model key": (
        _edit_json("loraqa.json", _set("model_config.tokenizer_code", "evil.py")),
        "loraqa.json: unknown key 'model_config.tokenizer_code'",
    ),
    "loraqa.json wrong type": (
        _edit_json("loraqa.json", _set("model_config.max_seq_length", "64")),
        "loraqa.json: key 'model_config.max_seq_length' must be an integer",
    ),
    "loraqa.json bool as int": (
        _edit_json("loraqa.json", _set("model_config.max_seq_length", True)),
        "loraqa.json: key 'model_config.max_seq_length' must be an integer",
    ),
    "loraqa.json trust as string": (
        _edit_json("loraqa.json", _set("model_config.trust_remote_code", "yes")),
        "loraqa.json: key 'model_config.trust_remote_code' must be true/false",
    ),
    "loraqa.json not an object": (
        _edit_json("loraqa.json", lambda d: [d]),
        "loraqa.json: the file must be a JSON object",
    ),
    "loraqa.json no model_config": (
        _edit_json("loraqa.json", lambda d: {k: v for k, v in d.items() if k != "model_config"}),
        "loraqa.json: key 'model_config' is missing",
    ),
    "loraqa.json bad formulation": (
        _edit_json("loraqa.json", _set("formulation", "remote")),
        "loraqa.json: key 'formulation' must be",
    ),
    "adapter_config.json a list": (
        _edit_json("adapter_config.json", lambda d: [d]),
        "adapter_config.json: must be a JSON object, not a list",
    ),
    "adapter_config.json revision": (
        _edit_json("adapter_config.json", _set("revision", "main")),
        "adapter_config.json: key 'revision' must be null",
    ),
    "adapter_config.json megatron import": (
        _edit_json("adapter_config.json", _set("megatron_core", "os")),
        "adapter_config.json: key 'megatron_core'",
    ),
    "adapter_config.json auto_mapping elsewhere": (
        _edit_json("adapter_config.json", _set("auto_mapping", {"base_model_class": "X", "parent_library": "evil"})),
        "adapter_config.json: key 'auto_mapping'",
    ),
    "adapter_config.json unknown key": (
        _edit_json("adapter_config.json", _set("custom_loader", "evil.load")),
        "adapter_config.json: unknown key 'custom_loader'",
    ),
    "adapter_config.json wrong type": (
        _edit_json("adapter_config.json", _set("r", "8")),
        "adapter_config.json: key 'r' must be an integer",
    ),
    "adapter_config.json not LoRA": (
        _edit_json("adapter_config.json", _set("peft_type", "PROMPT_TUNING")),
        "adapter_config.json: key 'peft_type' must be \"LORA\"",
    ),
    "tokenizer.json missing": (_remove("tokenizer.json"), "tokenizer.json: missing"),
    "tokenizer_config.json missing": (_remove("tokenizer_config.json"), "tokenizer_config.json: missing"),
    "tokenizer class not in transformers": (
        _edit_json("tokenizer_config.json", _set("tokenizer_class", "EvilTokenizer")),
        "tokenizer_config.json: key 'tokenizer_class' is 'EvilTokenizer', not a tokenizer class of transformers",
    ),
    "tokenizer_config.json a list": (
        _edit_json("tokenizer_config.json", lambda d: [d]),
        "tokenizer_config.json: must be a JSON object",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ADAPTERS))
def test_bad_adapter_files_are_one_line_naming_the_file(trained_bert, tmp_path, capsys, case):
    adapter = tmp_path / "adapter"
    shutil.copytree(trained_bert, adapter)
    damage, expected = BAD_ADAPTERS[case]
    damage(adapter)
    before = snapshot(adapter)
    code, _, err = run_cli(capsys, "predict", "--adapter", str(adapter), *QUESTION)
    line = one_line_error(err)
    assert code == 2
    assert str(adapter) in line and expected in line, line
    assert snapshot(adapter) == before
