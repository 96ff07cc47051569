"""The `loraqa` command as a user runs it: real pipelines on tiny models, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from run_helpers import one_line_error, run_cli, tiny_overrides

from loraqa.cli import main


@pytest.fixture(scope="module")
def trained_gpt2(tiny_model_dir, qa_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "gpt2-run"
    assert main(["train", *tiny_overrides(tiny_model_dir("gpt2"), qa_files, out)]) == 0
    return out


def test_train_prints_both_rows_and_the_run_directory(tiny_model_dir, qa_files, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", *tiny_overrides(tiny_model_dir("bert"), qa_files, out))
    assert code == 0
    assert "(no adapter)" in stdout and "+ LoRA" in stdout
    assert f"run directory: {out}" in stdout


def test_existing_run_is_refused_then_resumed_or_overwritten(tiny_model_dir, qa_files, tmp_path, capsys):
    run = tmp_path / "run"  # its own run (not the module's): this test overwrites it
    args = tiny_overrides(tiny_model_dir("gpt2"), qa_files, run, "evaluation.baseline=false")
    assert run_cli(capsys, "train", *args)[0] == 0
    before = (run / "metrics.json").read_text()
    weights = run / "adapter" / "adapter_model.safetensors"
    trained = weights.read_bytes()
    code, _, err = run_cli(capsys, "train", *args)
    assert code == 2
    assert "already holds a run" in one_line_error(err)
    assert (run / "metrics.json").read_text() == before  # nothing touched

    code, _, err = run_cli(capsys, "train", *args, "lora.r=4", "--resume")
    assert code == 2 and "'lora.r' changed" in one_line_error(err)

    # Resumed as it was: the finished run trains no more and keeps its adapter.
    code, stdout, err = run_cli(capsys, "train", *args, "--resume")
    assert code == 0, err
    assert f"run directory: {run}" in stdout
    assert weights.read_bytes() == trained
    # Overwritten: a new run with the new settings replaces the old one.
    code, _, _ = run_cli(capsys, "train", *args, "lora.r=4", "--overwrite")
    assert code == 0
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 4
    assert weights.read_bytes() != trained


def test_eval_base_and_adapter_with_several_decodings(trained_gpt2, tiny_model_dir, qa_files, tmp_path, capsys):
    model_args = tiny_overrides(tiny_model_dir("gpt2"), qa_files, tmp_path / "x")
    code, stdout, _ = run_cli(capsys, "eval", *model_args, "--output", str(tmp_path / "base"))
    assert code == 0 and json.loads((tmp_path / "base" / "metrics.json").read_text())["adapter"] is None

    code, stdout, _ = run_cli(
        capsys,
        "eval",
        *model_args,
        "--adapter",
        str(trained_gpt2 / "adapter"),
        "--decoding",
        "greedy,beam2,topk5",
        "--output",
        str(tmp_path / "dec"),
    )
    assert code == 0
    for decoding in ("greedy", "beam2", "topk5"):
        assert f"[{decoding}]" in stdout
        metrics = json.loads((tmp_path / "dec" / decoding / "metrics.json").read_text())
        assert metrics["decoding"] == decoding and metrics["count"] == 8
        assert (tmp_path / "dec" / decoding / "predictions.json").is_file()
    # the answers side by side: one row per question, a column per decoding
    side = [json.loads(line) for line in (tmp_path / "dec" / "decodings.jsonl").read_text().splitlines()]
    assert len(side) == 8 and {"id", "question", "gold_answers", "greedy", "beam2", "topk5"} == set(side[0])
    greedy = json.loads((tmp_path / "dec" / "greedy" / "predictions.json").read_text())
    assert {row["id"]: row["greedy"] for row in side} == greedy
    # an evaluation already there is not overwritten
    code, _, err = run_cli(capsys, "eval", *model_args, "--output", str(tmp_path / "base"))
    assert code == 2 and "already holds an evaluation" in one_line_error(err)


def test_predict_one_question_and_a_file(trained_gpt2, tmp_path, capsys):
    adapter = str(trained_gpt2 / "adapter")
    code, stdout, _ = run_cli(
        capsys,
        "predict",
        "--adapter",
        adapter,
        "--question",
        "Who founded Avalon?",
        "--context",
        "The town of Avalon was founded in 1800 by Ada.",
    )
    assert code == 0 and "confidence" in stdout

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"id": "a", "question": "Who?", "context": "Ada did."}\n{"question": "When?", "context": "In 1800."}\n'
    )
    code, _, _ = run_cli(
        capsys, "predict", "--adapter", adapter, "--input", str(questions), "--output", str(tmp_path / "answers.jsonl")
    )
    rows = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert code == 0 and [r["id"] for r in rows] == ["a", "2"]
    assert all(0.0 <= r["confidence"] <= 1.0 for r in rows)

    code, _, err = run_cli(
        capsys, "predict", "--adapter", adapter, "--input", str(questions), "--output", str(tmp_path / "answers.jsonl")
    )
    assert code == 2 and "exists" in one_line_error(err)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?"}\n')
    code, _, err = run_cli(capsys, "predict", "--adapter", adapter, "--input", str(bad))
    assert code == 2 and "bad.jsonl: record line 1: line has no 'context'" in one_line_error(err)


def test_merge_writes_a_plain_model_that_answers_the_same(trained_gpt2, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    merged = tmp_path / "merged"
    code, _, _ = run_cli(capsys, "merge", "--adapter", str(trained_gpt2 / "adapter"), "--output", str(merged))
    assert code == 0 and (merged / "model.safetensors").is_file()
    readme = (merged / "README.md").read_text()  # what it is and how to load it
    assert str(trained_gpt2 / "adapter") in readme and "loraqa predict --model DIR" in readme
    assert not any("lora" in name for name, _ in AutoModelForCausalLM.from_pretrained(merged).named_parameters())
    code, _, err = run_cli(capsys, "merge", "--adapter", str(trained_gpt2 / "adapter"), "--output", str(merged))
    assert code == 2 and "not empty" in one_line_error(err)


def test_adapter_on_another_base_names_both(trained_gpt2, tiny_model_dir, tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "eval",
        "--adapter",
        str(trained_gpt2 / "adapter"),
        "--model",
        str(tiny_model_dir("bert")),
        "--output",
        str(tmp_path / "e"),
    )
    line = one_line_error(err)
    assert code == 2 and "was trained on base" in line and str(tiny_model_dir("bert")) in line


@pytest.mark.parametrize("broken", ["adapter_model.safetensors", "adapter_config.json"])
def test_incomplete_or_corrupt_adapter(trained_gpt2, tmp_path, capsys, broken):
    import shutil

    copy = tmp_path / "adapter"
    shutil.copytree(trained_gpt2 / "adapter", copy)
    (copy / broken).write_bytes(b"\x00garbage")
    code, _, err = run_cli(capsys, "predict", "--adapter", str(copy), "--question", "q?", "--context", "c.")
    assert code == 2 and f"{broken}: corrupt" in one_line_error(err)
    (copy / broken).unlink()
    code, _, err = run_cli(capsys, "predict", "--adapter", str(copy), "--question", "q?", "--context", "c.")
    assert code == 2 and f"{broken}: missing" in one_line_error(err)


def test_bad_data_file_is_one_line_naming_file(tiny_model_dir, qa_files, tmp_path, capsys):
    broken = tmp_path / "train.json"
    broken.write_text('{"data": [{"title": "t", "paragraphs": [{"context": "abc", "qas": [')
    code, _, err = run_cli(
        capsys, "train", *tiny_overrides(tiny_model_dir("bert"), qa_files, tmp_path / "r"), f"data.train={broken}"
    )
    assert code == 2 and "train.json" in one_line_error(err)
    assert not (tmp_path / "r").exists()  # the corrected command is not blocked by a half-made run


def test_real_process_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "loraqa", "train", "lora.r=0"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "loraqa: error: config key 'lora.r': the rank must be at least 1, got 0"
    assert not (tmp_path / "runs").exists()


def test_help_lists_every_option_and_config_key(capsys):
    for command in ("train", "eval", "predict", "merge"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--decoding" in out and "training.learning_rate" in out


def test_adapter_on_a_base_with_another_vocabulary(trained_gpt2, tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    other = tmp_path / "gpt2-bigger-vocab"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("gpt2"))
    model.resize_token_embeddings(model.config.vocab_size + 8)
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_model_dir("gpt2")).save_pretrained(other)
    code, _, err = run_cli(
        capsys,
        "eval",
        "--adapter",
        str(trained_gpt2 / "adapter"),
        "--model",
        str(other),
        "--output",
        str(tmp_path / "e"),
    )
    line = one_line_error(err)
    assert code == 2 and "vocabulary of" in line and str(other) in line


def test_extractive_eval_is_not_labelled_with_a_decoding(tiny_model_dir, qa_files, tmp_path, capsys):
    model_args = tiny_overrides(tiny_model_dir("bert"), qa_files, tmp_path / "x")
    code, stdout, err = run_cli(
        capsys, "eval", *model_args, "--decoding", "greedy,beam2", "--output", str(tmp_path / "e")
    )
    assert code == 0 and "no decoding applies: evaluated once" in err
    assert "[greedy]" not in stdout.splitlines()[2]  # the one row: the model, not labelled with a decoding
    assert (tmp_path / "e" / "metrics.json").is_file() and not (tmp_path / "e" / "decodings.jsonl").exists()
