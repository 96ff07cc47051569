"""`loraqa compare`: runs on identical questions, one table, best chosen on validation, resumable."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml
from kill_helpers import kill, start_loraqa, wait_until_stopped
from run_helpers import tiny_overrides

import loraqa.experiments.compare as compare_module
from loraqa.cli import main
from loraqa.errors import ConfigError
from loraqa.experiments.compare import compare, format_comparison


def _config_file(path: Path, model_dir: Path) -> str:
    path.write_text(yaml.safe_dump({"model": {"name": str(model_dir)}}))
    return str(path)


def _shared(files) -> list[str]:
    # tiny_overrides minus the model and output_dir, with a checkpoint every step: what every compared config shares
    return [
        o
        for o in tiny_overrides(Path("unused"), files, Path("unused"), "training.save_steps=1")
        if not o.startswith(("model.name=", "output_dir="))
    ]


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_compare_trains_each_config_on_identical_questions_and_resumes_only_the_unfinished(
    tiny_model_dir, qa_files, tmp_path, monkeypatch, capsys
):
    # bert second: the run that a kill interrupts below is the extractive one (its QA head and segment
    # embeddings are modules_to_save), on the defaults (baseline on).
    configs = [
        _config_file(tmp_path / "gpt2.yaml", tiny_model_dir("gpt2")),
        _config_file(tmp_path / "bert.yaml", tiny_model_dir("bert")),
    ]
    root = tmp_path / "runs"
    assert main(["compare", *configs, *_shared(qa_files), "--name", "pair", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    pair = root / "pair"
    bert, gpt2 = pair / "bert", pair / "gpt2"
    assert _ids(bert / "predictions.jsonl") == _ids(gpt2 / "predictions.jsonl")
    summaries = [json.loads((d / "summary.json").read_text()) for d in (bert, gpt2)]
    assert summaries[0]["questions"] == summaries[1]["questions"]  # train, validation and test ids
    assert summaries[0]["questions"]["validation"]["count"] > 0
    result = json.loads((pair / "comparison.json").read_text())
    assert result["chosen_on"] == "validation f1" and result["identical_questions"] is True
    rows = {r["run"]: r for r in result["runs"]}
    assert {r["formulation"] for r in rows.values()} == {"extractive", "causal"}
    assert all(r["peak_memory_mib"] > 0 and r["peak_memory_kind"] for r in rows.values())
    best = max(rows.values(), key=lambda r: r["validation_f1"])["run"]
    assert result["best"] == best
    assert f"* best on validation F1 ({best})" in out and "test columns are never used" in out
    assert "bert" in out and "gpt2" in out and "val F1" in out
    assert (pair / "report.md").is_file()  # the report of the whole comparison
    # Every other run is paired with the best on the same test questions, with an interval.
    other = next(r for name, r in rows.items() if name != best)
    assert rows[best]["versus_best"] is None
    assert other["versus_best"]["questions"] == summaries[0]["adapter"]["count"]
    assert (
        other["versus_best"]["f1"]["low"]
        <= other["versus_best"]["f1"]["difference"]
        <= other["versus_best"]["f1"]["high"]
    )
    assert f"{other['run']} vs {best}: F1" in out
    for summary in summaries:  # and each adapter with its own baseline
        assert summary["adapter_vs_baseline"]["questions"] == summary["adapter"]["count"]
        assert summary["adapter"]["f1_ci"]["n"] == summary["adapter"]["count"]
        for dimension in ("question_word", "answer_type", "context_length", "answer_position"):  # slices
            assert sum(s["n"] for s in summary["adapter"]["slices"][dimension].values()) == summary["adapter"]["count"]
            assert sum(c["n"] for c in summary["slices_vs_baseline"][dimension].values()) == summary["adapter"]["count"]
    assert "Where it fails: F1 by slice" in (pair / "report.md").read_text()
    assert "Confidence and abstention" in (pair / "report.md").read_text()
    calibration = json.loads((bert / "metrics.json").read_text())["calibration"]  # fitted on validation, on test
    assert calibration["fitted_on"].startswith("validation") and len(calibration["coverage"]) == 10
    assert set(calibration["test"]) == {"ece_before", "ece_after", "brier_before", "brier_after"}

    # Finished runs compared as they are: nothing trains, the same paired rows, the changed questions listed.
    monkeypatch.setattr(compare_module, "run_training", lambda *a, **k: pytest.fail("compare of runs trained"))
    assert main(["compare", str(bert), str(gpt2), "--name", "existing", "--dir", str(root)]) == 0
    existing = json.loads((root / "existing" / "comparison.json").read_text())
    assert existing["source"] == "existing" and existing["best"] == best
    assert existing["common_test_questions"] == summaries[0]["adapter"]["count"]
    again_rows = {r["run"]: r for r in existing["runs"]}
    assert again_rows[other["run"]]["versus_best"] == other["versus_best"]
    changes = [json.loads(line) for line in (root / "existing" / "changes.jsonl").read_text().splitlines()]
    mcnemar = other["versus_best"]["exact_match"]["mcnemar"]
    assert sum(c["change"] == "fixed" for c in changes) == mcnemar["only_a_right"]
    assert sum(c["change"] == "broken" for c in changes) == mcnemar["only_b_right"]
    assert (root / "existing" / "report.html").is_file()
    capsys.readouterr()
    assert main(["compare", str(bert), configs[0], "--name", "mixed", "--dir", str(root)]) == 2
    assert "not both" in capsys.readouterr().err and not (root / "mixed").exists()
    monkeypatch.undo()

    # The same command killed (kill -9) in the second run's training, after its baseline and checkpoint-2,
    # then run again: the finished run is re-used untouched, the killed one resumes, nothing else trains,
    # and the comparison ends as the uninterrupted one did.
    killed = tmp_path / "killed"
    log, stopped = tmp_path / "compare.log", tmp_path / "stopped"
    argv = ["compare", *configs, *_shared(qa_files), "--name", "pair", "--dir", str(killed)]
    process = start_loraqa(argv, log, hang_at="step:2", markers=stopped, run="bert")
    wait_until_stopped(process, stopped, log)
    kill(process, signal.SIGKILL)
    assert not (killed / "pair" / "bert" / "summary.json").exists()
    trained = []
    real = compare_module.run_training
    monkeypatch.setattr(
        compare_module,
        "run_training",
        lambda config, **kw: trained.append((config.name, kw["resume"])) or real(config, **kw),
    )
    before = (killed / "pair" / "gpt2" / "summary.json").stat().st_mtime_ns
    again = compare(configs, _shared(qa_files), "pair", root=killed)
    assert trained == [("bert", True)]
    assert [r.status for r in again.runs] == ["reused", "resumed"]
    assert (killed / "pair" / "gpt2" / "summary.json").stat().st_mtime_ns == before
    for run in ("gpt2", "bert"):
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            assert (killed / "pair" / run / "adapter" / name).read_bytes() == (
                pair / run / "adapter" / name
            ).read_bytes()
        for record in ("metrics.json", "baseline/metrics.json", "predictions.jsonl"):
            assert _scores(killed / "pair" / run / record) == _scores(pair / run / record)
    outcome = json.loads((killed / "pair" / "comparison.json").read_text())
    assert outcome["best"] == result["best"]
    assert [_scored(r) for r in outcome["runs"]] == [_scored(r) for r in result["runs"]]


def _scores(path: Path):
    if path.suffix == ".jsonl":
        return path.read_text()
    return {
        k: v for k, v in json.loads(path.read_text()).items() if k not in ("seconds", "questions_per_second", "adapter")
    }


def _scored(row: dict) -> dict:
    """A comparison row without what may differ between two runs of one config (paths, times, memory)."""
    varying = ("run_dir", "status", "train_seconds", "peak_memory_mib", "peak_memory_kind")
    return {k: v for k, v in row.items() if k not in varying}


def test_best_is_chosen_on_validation_not_test():
    rows = [
        {
            "run": "a",
            "model": "m",
            "formulation": "causal",
            "trainable_params": 10,
            "trainable_percent": 1.0,
            "train_seconds": 1,
            "baseline_f1": 0,
            "validation_f1": 50.0,
            "test_exact_match": 90,
            "test_f1": 90,
            "test_rougeL": 90,
        },
        {
            "run": "b",
            "model": "m",
            "formulation": "causal",
            "trainable_params": 10,
            "trainable_percent": 1.0,
            "train_seconds": 1,
            "baseline_f1": 0,
            "validation_f1": 60.0,
            "test_exact_match": 10,
            "test_f1": 10,
            "test_rougeL": 10,
        },
    ]
    table = format_comparison(rows, "b")
    assert table.splitlines()[3].startswith("*") and "* best on validation F1 (b)" in table


def test_the_table_shows_peak_memory_and_n_a_for_a_run_that_recorded_none():
    rows = [
        {
            "run": "a",
            "model": "m",
            "formulation": "causal",
            "trainable_params": 10,
            "trainable_percent": 1.0,
            "train_seconds": 1,
            "peak_memory_mib": 2048.4,
            "peak_memory_kind": "cuda_allocated",
            "baseline_f1": 0,
            "validation_f1": 50.0,
            "test_exact_match": 9,
            "test_f1": 9,
            "test_rougeL": 9,
        },
        {
            "run": "older",
            "model": "m",
            "formulation": "causal",
            "trainable_params": 10,
            "trainable_percent": 1.0,
            "train_seconds": 1,
            "baseline_f1": 0,
            "validation_f1": 60.0,
            "test_exact_match": 1,
            "test_f1": 1,
            "test_rougeL": 1,
        },  # a comparison.json row written before runs recorded peak memory
    ]
    lines = format_comparison(rows, "older").splitlines()
    memory = lines[0].index("peak memory")
    assert lines[2][memory:].split()[:2] == ["2,048", "MiB"] and lines[3][memory:].split()[0] == "n/a"
    assert "peak memory: training's peak, cuda_allocated" in lines[-1]


def test_configs_whose_data_differs_are_refused_in_one_line(tiny_model_dir, qa_files, tmp_path):
    a = _config_file(tmp_path / "a.yaml", tiny_model_dir("bert"))
    b = tmp_path / "b.yaml"
    b.write_text(yaml.safe_dump({"model": {"name": str(tiny_model_dir("gpt2"))}, "data": {"test_samples": 3}}))
    with pytest.raises(ConfigError) as caught:
        compare([a, str(b)], _shared(qa_files), "bad", root=tmp_path / "runs")
    message = str(caught.value)
    assert "data.test_samples" in message and "b.yaml" in message and "\n" not in message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("prefix", ["seed004-", "offline-"])
def test_shipped_comparison_sets_parse_and_agree_on_data_and_decoding(prefix):
    from loraqa.config.loader import load_config
    from loraqa.config.shipped import SHIPPED_DIR

    paths = sorted(str(p) for p in (SHIPPED_DIR / "compare").glob(f"{prefix}*.yaml"))
    assert len(paths) == 3
    configs = [load_config(p) for p in paths]
    compare_module._check_identical(paths, configs)  # what `loraqa compare` checks before training
    assert all(Path(p).read_text().startswith("# loraqa compare ") for p in paths)
    assert len(set(compare_module.run_names(paths, configs))) == 3
