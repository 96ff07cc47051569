"""`loraqa compare RUN_DIR... --data FILE`: finished runs' adapters evaluated on a data file, then paired there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import run_cli, tiny_overrides
from tiny_models import synthetic_records, write_jsonl

from loraqa.cli import main


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_finished_runs_are_evaluated_on_the_data_file_and_compared_there(tiny_model_dir, qa_files, tmp_path, capsys):
    runs = []
    for r in (2, 8):
        out = tmp_path / f"r{r}"
        assert (
            main(
                [
                    "train",
                    *tiny_overrides(tiny_model_dir("bert"), qa_files, out, "evaluation.baseline=false", f"lora.r={r}"),
                ]
            )
            == 0
        )
        runs.append(out)
    other = write_jsonl(tmp_path / "other.jsonl", synthetic_records(52)[40:])  # 12 questions neither run tested on
    code, out, _ = run_cli(
        capsys,
        "compare",
        *map(str, runs),
        "--name",
        "there",
        "--dir",
        str(tmp_path / "c"),
        "--data",
        str(other),
        "--no-report",
    )
    assert code == 0
    comparison = json.loads((tmp_path / "c" / "there" / "comparison.json").read_text())
    assert comparison["common_test_questions"] == 12
    for name in ("r2", "r8"):
        evaluated = _rows(tmp_path / "c" / "there" / name / "predictions.jsonl")
        assert [row["id"] for row in evaluated] == [f"q{i}" for i in range(40, 52)]
        # the same answers `loraqa eval --adapter` gives on that file
        assert (
            main(
                [
                    "eval",
                    "--adapter",
                    str(tmp_path / name / "adapter"),
                    f"data.test={other}",
                    "--output",
                    str(tmp_path / f"eval-{name}"),
                    "model.max_seq_length=64",
                    "model.doc_stride=16",
                ]
            )
            == 0
        )
        direct = _rows(tmp_path / f"eval-{name}" / "predictions.jsonl")
        assert [{k: v for k, v in row.items() if k != "confidence"} for row in evaluated] == [
            {k: v for k, v in row.items() if k != "confidence"} for row in direct
        ]
        assert [row["confidence"] for row in evaluated] == pytest.approx(
            [row["confidence"] for row in direct], rel=1e-4
        )
    rows = {row["run"]: row for row in comparison["runs"]}
    paired = next(row["versus_best"] for row in rows.values() if row["versus_best"])
    assert paired["questions"] == 12
    changes = _rows(tmp_path / "c" / "there" / "changes.jsonl")
    mcnemar = paired["exact_match"]["mcnemar"]
    assert sum(c["change"] == "fixed" for c in changes) == mcnemar["only_a_right"]
    assert sum(c["change"] == "broken" for c in changes) == mcnemar["only_b_right"]
    capsys.readouterr()
    assert main(["compare", "a.yaml", "b.yaml", "--name", "x", "--dir", str(tmp_path / "c"), "--data", str(other)]) == 2
    assert "--data" in capsys.readouterr().err
