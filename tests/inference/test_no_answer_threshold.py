"""SQuAD v2 abstention end to end: the threshold is the arg-max of validation F1 (recomputed here from
the saved per-question null scores), never depends on the test split, travels with the adapter and is
what `loraqa eval` answers with, unless a number is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import run_cli, tiny_overrides
from tiny_models import synthetic_v2_records, write_jsonl

from loraqa.cli import main
from loraqa.metrics.abstention import decide
from loraqa.metrics.squad import f1


def _train(tiny_model_dir, files, out: Path, *extra: str) -> Path:
    args = tiny_overrides(tiny_model_dir("bert"), files, out, "evaluation.baseline=false", *extra)
    assert main(["train", *args, "data.validation_samples=12", "training.max_steps=40"]) == 0
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _argmax_threshold(rows: list[dict]) -> tuple[float, float]:
    """The lowest threshold with the highest mean F1, by brute force over every decision-changing threshold."""
    diffs = sorted({r["null_score_diff"] for r in rows})
    scores = {}
    for t in [diffs[0] - 1.0, *diffs]:
        scores[t] = sum(f1(decide(r["null_score_diff"], r["best_answer"], t), r["gold_answers"]) for r in rows)
    best = max(scores.values())
    return min(t for t, s in scores.items() if s >= best - 1e-9), 100.0 * best / len(rows)


@pytest.fixture(scope="module")
def v2_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("v2-data")
    rows = synthetic_v2_records(120)  # 180 rows: at most a tenth (18) may be carved for validation
    return {
        "train": write_jsonl(root / "train.jsonl", rows[:150]),
        "test": write_jsonl(root / "test.jsonl", rows[150:]),
        "other_test": write_jsonl(root / "other.jsonl", rows[165:]),
    }


@pytest.fixture(scope="module")
def v2_run(tiny_model_dir, v2_files, tmp_path_factory) -> Path:
    return _train(tiny_model_dir, v2_files, tmp_path_factory.mktemp("v2") / "run")


def test_the_threshold_is_the_argmax_of_validation_f1_and_the_adapter_carries_it(v2_run):
    metrics = json.loads((v2_run / "metrics.json").read_text())
    chosen = metrics["no_answer_threshold"]
    assert chosen["chosen_on"] == "validation" and chosen["validation_questions"] == 12
    validation = _rows(v2_run / "validation" / "predictions.jsonl")
    assert len(validation) == 12 and all("null_score_diff" in r and "best_answer" in r for r in validation)
    threshold, best_f1 = _argmax_threshold(validation)
    assert chosen["value"] == pytest.approx(threshold) and chosen["validation_f1"] == pytest.approx(best_f1)
    stored = json.loads((v2_run / "adapter" / "loraqa.json").read_text())["no_answer_threshold"]
    assert stored["value"] == chosen["value"] and stored["chosen_on"] == "validation"
    # The test split is decided at that threshold, and scored with HasAns / NoAns.
    for row in _rows(v2_run / "predictions.jsonl"):
        assert row["prediction"] == decide(row["null_score_diff"], row["best_answer"], chosen["value"])
    assert metrics["HasAns_total"] == 20 and metrics["NoAns_total"] == 10 and "NoAns_f1" in metrics
    assert [p["threshold"] for p in chosen["curve"]] == sorted(p["threshold"] for p in chosen["curve"])


def test_another_test_split_does_not_change_the_threshold(v2_run, tiny_model_dir, v2_files, tmp_path):
    files = {**v2_files, "test": v2_files["other_test"]}
    other = _train(tiny_model_dir, files, tmp_path / "other")
    first = json.loads((v2_run / "metrics.json").read_text())["no_answer_threshold"]
    second = json.loads((other / "metrics.json").read_text())["no_answer_threshold"]
    assert second["value"] == first["value"] and second["validation_f1"] == first["validation_f1"]


def test_eval_answers_with_the_adapters_threshold_and_a_number_wins(v2_run, v2_files, tiny_model_dir, tmp_path, capsys):
    stored = json.loads((v2_run / "adapter" / "loraqa.json").read_text())["no_answer_threshold"]["value"]
    for name, extra, threshold in (("auto", (), stored), ("given", ("evaluation.null_score_diff_threshold=1e9",), 1e9)):
        code, out, _ = run_cli(
            capsys,
            "eval",
            "--adapter",
            str(v2_run / "adapter"),
            f"data.test={v2_files['test']}",
            "--output",
            str(tmp_path / name),
            "model.max_seq_length=64",
            *extra,
        )
        assert code == 0 and "HasAns F1" in out and "NoAns F1" in out
        rows = _rows(tmp_path / name / "predictions.jsonl")
        assert all(r["prediction"] == decide(r["null_score_diff"], r["best_answer"], threshold) for r in rows)
    given = _rows(tmp_path / "given" / "predictions.jsonl")
    assert all(r["prediction"] == r["best_answer"] for r in given)  # 1e9: nothing abstains
