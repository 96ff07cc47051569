"""The README's usage commands, run as a user runs them (in a fresh directory), on tiny models.

The commands are read from README.md itself (the block after `. .venv/bin/activate`), so the
README cannot drift from what works. Each keeps its shape (subcommand, config name, flags, paths,
the README's own overrides); only the model and the budget shrink, by overrides appended after
the README's (later ones win). The main job (`scripts/main-job.sh`: `loraqa train minilm-l6-squad`)
runs first in the same way, since the README's predict/merge/report commands read its run.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from run_helpers import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"
MAIN_JOB = ["train", "minilm-l6-squad"]  # scripts/main-job.sh, without its timestamped name


def readme_commands() -> list[list[str]]:
    """Each `loraqa ...` command of the README's usage block, continuation lines joined, as argv."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```bash\n\. \.venv/bin/activate\n(.*?)```", text, re.S)
    assert block, "README.md: the usage block (```bash, then `. .venv/bin/activate`) is missing"
    joined = block.group(1).replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]
    assert all(c[0] == "loraqa" for c in commands), commands
    return [c[1:] for c in commands]


def test_the_readme_usage_block_is_found():
    commands = readme_commands()
    assert {c[0] for c in commands} >= {"train", "eval", "predict", "merge", "report", "config", "configs"}


def _shrunk(argv: list[str], models, qa_files) -> list[str]:
    """The README's command with tiny models and budgets appended (never replacing its own words)."""
    data = [f"data.train={qa_files['train']}", f"data.test={qa_files['test']}", "data.validation_samples=4",
            "data.test_samples=8", "training.device=cpu", "evaluation.batch_size=4",
            "generation.max_new_tokens=4", "model.max_seq_length=128", "model.doc_stride=32"]  # fmt: skip
    command, rest = argv[0], argv[1:]
    if command == "train":
        config = rest[0]
        model = models["bert"] if config.startswith("minilm") else models["llama"]
        return [*argv, f"model.name={model}", *data, "training.max_steps=2", "training.report_to=none",
                "training.per_device_train_batch_size=4", "training.eval_strategy=no",
                "training.load_best_model_at_end=false", "training.early_stopping_patience=null",
                "lora.allow_large_trainable_share=true", "evaluation.baseline=false"]  # fmt: skip
    if command == "eval":
        if "--adapter" in rest:
            return [*argv, *data]
        return [*[a if not a.startswith("model.name=") else f"model.name={models['llama']}" for a in argv], *data]
    if command in ("predict", "merge"):
        return [*argv, "training.device=cpu"]
    return argv


@pytest.mark.integration
def test_the_readme_commands_run(tiny_model_dir, qa_files, tmp_path, monkeypatch, capsys):
    models = {family: tiny_model_dir(family) for family in ("bert", "llama")}
    monkeypatch.chdir(tmp_path)  # runs/..., questions.jsonl, merged-model/ are relative, as in the README
    (tmp_path / "questions.jsonl").write_text(
        json.dumps({"id": "q1", "question": "Who founded the town?",
                    "context": "The town was founded in 1850 by Ada Lovelace."}) + "\n", encoding="utf-8")  # fmt: skip
    for argv in [MAIN_JOB, *readme_commands()]:
        code, out, err = run_cli(capsys, *_shrunk(argv, models, qa_files))
        assert code == 0, f"loraqa {shlex.join(argv)} failed:\n{err[-2000:]}"
        if argv[0] == "config":
            assert "training.learning_rate" in out
        if argv[0] == "configs":
            assert "minilm-l6-squad" in out
    assert (tmp_path / "runs" / "minilm-l6-squad" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "runs" / "smollm2-135m-squad" / "adapter" / "adapter_config.json").is_file()
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [a["id"] for a in answers] == ["q1"]
    assert (tmp_path / "merged-model" / "config.json").is_file()
    assert (tmp_path / "runs" / "minilm-l6-squad" / "report.md").is_file()
