"""The README's commands, run as a user runs them (in a fresh directory), on tiny models.

The commands are read from README.md itself (every ```bash block, tests/doc_commands.py), so the
README cannot drift from what works. Each keeps its shape (subcommand, config name, flags, paths,
the README's own overrides); only the model and the budget shrink, by overrides appended after
the README's (later ones win). The first run (`loraqa train minilm-l6-squad`, what
`scripts/main-job.sh` runs) comes first, since the predict/merge/report commands read its run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from doc_commands import read_page, run_page

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_commands_are_found():
    commands = [argv for argv, _ in read_page(README).commands]
    assert commands[0] == ["train", "minilm-l6-squad"], "the first run comes first"
    assert {c[0] for c in commands} >= {"train", "eval", "predict", "merge", "report", "sweep", "config", "configs"}


@pytest.mark.integration
def test_the_readme_commands_run(tiny_model_dir, qa_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # runs/..., questions.jsonl, merged-model/ are relative, as in the README
    (tmp_path / "questions.jsonl").write_text(
        json.dumps(
            {
                "id": "q1",
                "question": "Who founded the town?",
                "context": "The town was founded in 1850 by Ada Lovelace.",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    outputs = dict((argv[0], out) for argv, out in run_page(README, tiny_model_dir, qa_files, tmp_path, capsys))
    assert "training.learning_rate" in outputs["config"]
    assert "minilm-l6-squad" in outputs["configs"]
    assert (tmp_path / "runs" / "minilm-l6-squad" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "runs" / "smollm2-135m-squad" / "adapter" / "adapter_config.json").is_file()
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [a["id"] for a in answers] == ["q1"]
    assert (tmp_path / "merged-model" / "config.json").is_file()
    assert (tmp_path / "runs" / "minilm-l6-squad" / "report.md").is_file()
    assert json.loads((tmp_path / "runs" / "first-sweep" / "sweep.json").read_text())["best"]
