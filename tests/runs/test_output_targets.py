"""Nothing the user had is overwritten without `--overwrite`: run names stay inside the runs folder,
and train, eval, predict and merge refuse targets that already hold something."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loraqa.cli import main
from loraqa.config.loader import load_config
from loraqa.errors import ConfigError, RunDirError
from loraqa.runs.rundir import RunDirectory

LORAQA_OUTPUTS = [
    "config.yaml",
    "metrics.json",
    "predictions.json",
    "predictions.jsonl",
    "summary.json",
    "train_log.jsonl",
    "report.md",
    "adapter/",
    "checkpoints/",
    "baseline/",
    "eval/metrics.json",
    "greedy/predictions.json",
]


def make(root: Path, name: str) -> Path:
    path = root / name.rstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith("/"):
        path.mkdir()
        (path / "kept").write_text("earlier")
    else:
        path.write_text("earlier")
    return path


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../elsewhere", "a\\b", "a\0b", "-rf", "", " "])
def test_a_run_name_must_be_one_plain_folder_name(name):
    with pytest.raises(ConfigError, match="config key 'name'"):
        load_config(None, [f"name={name}"])


def test_name_dotdot_writes_nothing_in_the_working_directory(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work" / "runs"
    work.mkdir(parents=True)
    (work.parent / "predictions.json").write_text("mine")
    monkeypatch.chdir(work.parent)
    assert main(["train", "name=..", "output_dir=runs/{name}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("loraqa: error: config key 'name'") and "Traceback" not in err
    assert snapshot(work.parent) == {"predictions.json": "mine"}


@pytest.mark.parametrize("name", LORAQA_OUTPUTS)
def test_training_refuses_a_directory_holding_any_loraqa_output(tmp_path, name):
    make(tmp_path, name)
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    config = load_config(None, [f"output_dir={tmp_path}"])
    with pytest.raises(RunDirError, match=f"already holds .*{name.split('/')[0]}.*--overwrite"):
        RunDirectory(tmp_path).open_for_training(config, resume=False, overwrite=False)
    assert snapshot(tmp_path) == before
    run = RunDirectory(tmp_path)
    run.open_for_training(config, resume=False, overwrite=True)  # asked for: the output goes, the user's file stays
    run.release()
    assert not (tmp_path / name.split("/")[0]).exists() or name == "config.yaml"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_train_refuses_to_replace_an_earlier_evaluation(tiny_model_dir, qa_files, tmp_path):
    from run_helpers import tiny_config

    from loraqa.pipeline import run_training

    target = tmp_path / "d"
    for name in ("metrics.json", "predictions.json", "predictions.jsonl"):
        make(target, name)
    before = snapshot(target)
    with pytest.raises(RunDirError, match="already holds loraqa output"):
        run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, target))
    assert snapshot(target) == before


@pytest.mark.parametrize("name", ["predictions.json", "predictions.jsonl", "config.yaml", "beam2/metrics.json"])
def test_eval_refuses_an_output_directory_holding_loraqa_output(tmp_path, monkeypatch, name):
    from loraqa.inference import eval_command
    from loraqa.inference.eval_command import run_evaluation

    def past_the_check(*args):
        raise AssertionError("went on to load data and a model")

    monkeypatch.setattr(eval_command, "load_test", past_the_check)
    make(tmp_path / "d", name)
    before = snapshot(tmp_path)
    config = load_config(None, [f"output_dir={tmp_path / 'unused'}"])
    with pytest.raises(RunDirError, match="already holds .*--overwrite"):  # before any model loads
        run_evaluation(config, adapter=None, decodings=["greedy"], output=str(tmp_path / "d"), overwrite=False)
    assert snapshot(tmp_path) == before


def test_predict_output_is_new_and_exclusive(tmp_path, capsys):
    from loraqa.inference.answer import Answer
    from loraqa.inference.predict import print_answers

    rows = [Answer("a", 0.5, None, None, False, id="1", question="q")]
    existing = tmp_path / "answers.jsonl"
    existing.write_text("mine")
    with pytest.raises(RunDirError, match="answers.jsonl exists"):
        print_answers(rows, str(existing))
    assert existing.read_text() == "mine"
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(RunDirError, match="link.jsonl exists \\(or is a link\\)"):
        print_answers(rows, str(link))
    assert not (tmp_path / "elsewhere.jsonl").exists()
    print_answers(rows, str(tmp_path / "new.jsonl"))
    assert (tmp_path / "new.jsonl").read_text().count("\n") == 1


def test_predict_cli_refuses_a_dangling_link_before_loading_a_model(tmp_path, monkeypatch, capsys):
    import loraqa.inference.ready

    def loads_a_model(*args, **kwargs):
        raise AssertionError("loaded a model before checking --output")

    monkeypatch.setattr(loraqa.inference.ready, "load_for_answering", loads_a_model)
    link = tmp_path / "out.jsonl"
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    assert main(["predict", "--question", "q", "--context", "c", "--output", str(link)]) == 2
    assert "out.jsonl exists" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere.jsonl").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_merge_onto_a_file_is_one_line_and_keeps_the_file(tmp_path, monkeypatch, capsys, overwrite):
    import loraqa.inference.ready

    monkeypatch.setattr(
        loraqa.inference.ready, "load_for_answering", lambda *args, **kwargs: None
    )  # the target is checked before any weights matter
    target = tmp_path / "model.bin"
    target.write_text("mine")
    argv = ["merge", "--adapter", "a", "--output", str(target), *(["--overwrite"] if overwrite else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.bin exists and is not a directory" in err and "Traceback" not in err
    assert target.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["model.bin"]
