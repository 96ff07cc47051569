"""A corpus of bad inputs, each as a user would type it: one `loraqa: error:` line, exit status 2,
no traceback, and nothing that existed before the command changed (nor anything new left behind).

Every case runs in one working directory that holds the user's things: a trained adapter, data
files, an earlier run's outputs, a file and a folder where outputs might go. A snapshot of that
whole tree (bytes, permissions, link targets) is taken before the command and compared after it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from run_helpers import tiny_overrides

from loraqa.cli import main

CONTEXT = "The town of Avalon was founded in 1800 by Ada."
QUESTION = ("--question", "Who founded Avalon?", "--context", CONTEXT)


@pytest.fixture(scope="module")
def trained_adapter(tiny_model_dir, qa_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "bert-run"
    assert main(["train", *tiny_overrides(tiny_model_dir("bert"), qa_files, out, "evaluation.baseline=false")]) == 0
    return out / "adapter"


@pytest.fixture
def home(tmp_path, trained_adapter, qa_files, monkeypatch) -> Path:
    """The user's working directory, with what a command must never touch."""
    shutil.copytree(trained_adapter, tmp_path / "adapter")
    for name in ("train", "test"):
        shutil.copy(qa_files[name], tmp_path / f"{name}.jsonl")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "predictions.json").write_text('{"q1": "Ada"}\n')
    (earlier / "metrics.json").write_text('{"f1": 50.0}\n')
    (tmp_path / "answers.jsonl").write_text('{"id": "q1", "answer": "Ada"}\n')
    (tmp_path / "notes.txt").write_text("the user's file\n")
    os.symlink(tmp_path / "nowhere" / "target.jsonl", tmp_path / "dangling.jsonl")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple]:
    state = {}
    for path in sorted(root.rglob("*")):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            state[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif path.is_file():
            state[str(path.relative_to(root))] = ("file", path.read_bytes(), stat.S_IMODE(info.st_mode))
        else:
            state[str(path.relative_to(root))] = ("dir", stat.S_IMODE(info.st_mode))
    return state


def _write(name: str, text: str):
    return lambda home: (home / name).write_text(text)


def _adapter_edit(name: str, change):
    def setup(home: Path) -> None:
        path = home / "adapter" / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return setup


def _adapter_unlink(name: str):
    return lambda home: (home / "adapter" / name).unlink()


def _adapter_text(name: str, text: str):
    return lambda home: (home / "adapter" / name).write_text(text)


def _tiny(home: Path, *extra: str) -> list[str]:
    return [
        f"model.name={home / 'tiny-bert'}",
        f"data.train={home / 'train.jsonl'}",
        f"data.test={home / 'test.jsonl'}",
        "training.device=cpu",
        "model.max_seq_length=64",
        "model.doc_stride=16",
        *extra,
    ]


def _eval_decoding(h: Path, decoding: str) -> list[str]:
    """`loraqa eval` of the trained adapter on the test file with `decoding`, into a new folder."""
    return [
        "eval",
        f"data.test={h / 'test.jsonl'}",
        "--adapter",
        str(h / "adapter"),
        "--decoding",
        decoding,
        "--output",
        str(h / "new-eval"),
    ]


TRAIN = "train"
# name -> (setup or None, argv builder, a fragment the error line must contain)
CASES = {
    # configs and overrides
    "rank 0": (None, lambda h: [TRAIN, *_tiny(h, "lora.r=0")], "lora.r"),
    "learning rate nan": (None, lambda h: [TRAIN, *_tiny(h, "training.learning_rate=nan")], "training.learning_rate"),
    "learning rate inf": (None, lambda h: [TRAIN, *_tiny(h, "training.learning_rate=inf")], "training.learning_rate"),
    "max_grad_norm nan": (None, lambda h: [TRAIN, *_tiny(h, "training.max_grad_norm=nan")], "training.max_grad_norm"),
    "negative seed": (None, lambda h: [TRAIN, *_tiny(h, "training.seed=-1")], "training.seed"),
    "unknown scheduler": (None, lambda h: [TRAIN, *_tiny(h, "training.lr_scheduler_type=bogus")], "lr_scheduler_type"),
    "unknown section": (None, lambda h: [TRAIN, *_tiny(h, "nosuch.key=1")], "nosuch"),
    "misspelt key": (None, lambda h: [TRAIN, *_tiny(h, "lora.rr=8")], "lora.rr"),
    "wrong type": (
        None,
        lambda h: [TRAIN, *_tiny(h, "training.per_device_train_batch_size=abc")],
        "per_device_train_batch_size",
    ),
    "name ..": (None, lambda h: [TRAIN, *_tiny(h, "name=..")], "name"),
    "name with a slash": (None, lambda h: [TRAIN, *_tiny(h, "name=a/b")], "name"),
    "config file missing": (None, lambda h: [TRAIN, str(h / "missing.yaml")], "missing.yaml"),
    "config not a mapping": (_write("list.yaml", "- a\n- b\n"), lambda h: [TRAIN, str(h / "list.yaml")], "list.yaml"),
    "config not YAML": (_write("bad.yaml", "a: [1, 2\n"), lambda h: [TRAIN, str(h / "bad.yaml")], "bad.yaml"),
    "validation 0 but needed": (
        None,
        lambda h: [
            TRAIN,
            *_tiny(h, "data.validation_samples=0", "training.eval_strategy=steps", "training.eval_steps=1"),
        ],
        "validation",
    ),
    # sizes, kinds, keys given twice and numbers out of their sane range (issue 25, points 8 and 10)
    "config is /dev/zero": (None, lambda h: [TRAIN, "/dev/zero"], "/dev/zero"),
    "config is a directory": (None, lambda h: [TRAIN, str(h / "earlier")], "earlier"),
    "config gives a key twice": (
        _write("twice.yaml", "training:\n  seed: 1\n  seed: 2\n"),
        lambda h: [TRAIN, str(h / "twice.yaml")],
        "twice.yaml",
    ),
    "learning rate 1e30": (None, lambda h: [TRAIN, *_tiny(h, "training.learning_rate=1e30")], "training.learning_rate"),
    "rank beyond the model": (None, lambda h: [TRAIN, *_tiny(h, "lora.r=100000")], "lora.r"),
    "train data is /dev/zero": (
        lambda h: (h / "zero.jsonl").symlink_to("/dev/zero"),
        lambda h: [TRAIN, *_tiny(h, f"data.train={h / 'zero.jsonl'}")],
        "zero.jsonl",
    ),
    "train JSONL row gives a key twice": (
        _write("twice.jsonl", '{"id": "a", "question": "Who?", "context": "Ada.", "id": "b"}\n'),
        lambda h: [TRAIN, *_tiny(h, f"data.train={h / 'twice.jsonl'}")],
        "twice.jsonl",
    ),
    "decoding topk0": (
        None,
        lambda h: _eval_decoding(h, "topk0"),
        "--decoding",
    ),
    "sweep grid value of the wrong type": (
        None,
        lambda h: [
            "sweep",
            *_tiny(h),
            "--name",
            "s",
            "--dir",
            str(h / "sweep"),
            "--grid",
            "training.per_device_train_batch_size=4,x",
        ],
        "per_device_train_batch_size",
    ),
    # data files
    "train file missing": (None, lambda h: [TRAIN, *_tiny(h, f"data.train={h / 'nope.jsonl'}")], "nope.jsonl"),
    "train file truncated JSON": (
        _write("cut.json", '{"data": [{"title": "x", "paragraphs": ['),
        lambda h: [TRAIN, *_tiny(h, f"data.train={h / 'cut.json'}")],
        "cut.json",
    ),
    "train JSONL row without answers": (
        _write("noans.jsonl", json.dumps({"id": "a", "question": "q?", "context": "c"}) + "\n"),
        lambda h: [TRAIN, *_tiny(h, f"data.train={h / 'noans.jsonl'}")],
        "noans.jsonl",
    ),
    # output targets
    "train into a folder holding predictions": (
        None,
        lambda h: [TRAIN, *_tiny(h, f"output_dir={h / 'earlier'}")],
        "earlier",
    ),
    "eval into a folder holding predictions": (
        None,
        lambda h: [
            "eval",
            f"data.test={h / 'test.jsonl'}",
            "training.device=cpu",
            "--adapter",
            str(h / "adapter"),
            "--output",
            str(h / "earlier"),
        ],
        "earlier",
    ),
    "predict onto an existing file": (
        None,
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION, "--output", str(h / "answers.jsonl")],
        "--output",
    ),
    "predict onto a dangling link": (
        None,
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION, "--output", str(h / "dangling.jsonl")],
        "--output",
    ),
    "merge onto a file": (
        None,
        lambda h: ["merge", "--adapter", str(h / "adapter"), "--output", str(h / "notes.txt")],
        "notes.txt",
    ),
    "merge into a non-empty folder": (
        None,
        lambda h: ["merge", "--adapter", str(h / "adapter"), "--output", str(h / "earlier")],
        "earlier",
    ),
    "report of a folder that is no run": (None, lambda h: ["report", str(h / "adapter")], "adapter"),
    "unknown decoding": (
        None,
        lambda h: _eval_decoding(h, "beam-x"),
        "--decoding",
    ),
    # adapter directories
    "adapter folder missing": (
        None,
        lambda h: ["predict", "--adapter", str(h / "no-adapter"), *QUESTION],
        "no-adapter",
    ),
    "adapter_config.json a list": (
        _adapter_text("adapter_config.json", "[1, 2]"),
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION],
        "adapter_config.json",
    ),
    "adapter_config.json not JSON": (
        _adapter_text("adapter_config.json", "{not json"),
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION],
        "adapter_config.json",
    ),
    "loraqa.json unknown key": (
        _adapter_edit("loraqa.json", lambda d: d.update(surprise=1)),
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION],
        "loraqa.json",
    ),
    "loraqa.json wrong type": (
        _adapter_edit("loraqa.json", lambda d: d.update(vocab_size="many")),
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION],
        "loraqa.json",
    ),
    "tokenizer missing": (
        _adapter_unlink("tokenizer.json"),
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION],
        "tokenizer.json",
    ),
    "tokenizer with auto_map": (
        _adapter_edit("tokenizer_config.json", lambda d: d.update(auto_map={"AutoTokenizer": ["x.Y", None]})),
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION],
        "tokenizer_config.json",
    ),
    "weights corrupt": (
        _adapter_text("adapter_model.safetensors", "garbage"),
        lambda h: ["predict", "--adapter", str(h / "adapter"), *QUESTION],
        "adapter_model.safetensors",
    ),
    # predict inputs
    "predict input missing": (
        None,
        lambda h: ["predict", "--adapter", str(h / "adapter"), "--input", str(h / "q.jsonl")],
        "q.jsonl",
    ),
    "predict input not objects": (
        _write("q.jsonl", "[1, 2]\n"),
        lambda h: ["predict", "--adapter", str(h / "adapter"), "--input", str(h / "q.jsonl")],
        "q.jsonl",
    ),
    "predict input empty question": (
        _write("q.jsonl", json.dumps({"question": " ", "context": CONTEXT}) + "\n"),
        lambda h: ["predict", "--adapter", str(h / "adapter"), "--input", str(h / "q.jsonl")],
        "q.jsonl",
    ),
    "predict input duplicate ids": (
        _write("q.jsonl", 2 * (json.dumps({"id": "a", "question": "Who?", "context": CONTEXT}) + "\n")),
        lambda h: ["predict", "--adapter", str(h / "adapter"), "--input", str(h / "q.jsonl")],
        "q.jsonl",
    ),
    "predict context over the limit": (
        None,
        lambda h: ["predict", "--adapter", str(h / "adapter"), "--question", "Who?", "--context", "word " * 30_000],
        "max_context_chars",
    ),
    "predict question without context": (
        None,
        lambda h: ["predict", "--adapter", str(h / "adapter"), "--question", "Who?"],
        "--context",
    ),
}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, home, tiny_model_dir, capsys):
    setup, argv, fragment = CASES[case]
    os.symlink(tiny_model_dir("bert"), home / "tiny-bert")
    if setup:
        setup(home)
    before = snapshot(home)
    code = main(argv(home))
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("loraqa: error:")]
    assert code == 2, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    assert snapshot(home) == before, "the command changed or left files in the user's directory"
