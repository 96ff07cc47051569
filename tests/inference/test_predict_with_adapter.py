"""`loraqa predict` / `eval` with an adapter: input limits, SQuAD v2 "no answer", model.* overrides."""

from __future__ import annotations

import json

import pytest
from run_helpers import one_line_error, run_cli, tiny_overrides
from tiny_models import synthetic_records, write_jsonl

from loraqa.cli import main

CONTEXT = "The town of Avalon was founded in 1800 by Ada. It lies near a river and has a market."


def _train(tiny_model_dir, files, out, *extra) -> str:
    args = tiny_overrides(tiny_model_dir("bert"), files, out, "evaluation.baseline=false", *extra)
    assert main(["train", *args]) == 0
    return str(out / "adapter")


@pytest.fixture(scope="module")
def v1_adapter(tiny_model_dir, qa_files, tmp_path_factory) -> str:
    return _train(tiny_model_dir, qa_files, tmp_path_factory.mktemp("v1") / "run")


@pytest.fixture(scope="module")
def v2_adapter(tiny_model_dir, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("v2")
    rows = synthetic_records(40)
    for i, row in enumerate(list(rows[:12])):
        rows.append(
            {
                "id": f"u{i}",
                "context": row["context"],
                "question": "Who painted the market?",
                "answers": [],
                "is_impossible": True,
            }
        )
    files = {
        "train": write_jsonl(root / "train.jsonl", rows[:32] + rows[40:48]),
        "test": write_jsonl(root / "test.jsonl", rows[32:40] + rows[48:]),
    }
    adapter = _train(tiny_model_dir, files, root / "run")
    assert json.loads((root / "run" / "adapter" / "loraqa.json").read_text())["version_2"] is True
    return adapter


# --- data.max_context_chars and the data layer's record checks apply to predict's inputs ---


def test_a_huge_context_is_refused_before_any_model_loads(v1_adapter, capsys):
    huge = "word " * 180_000  # 0.9 MB
    code, _, err = run_cli(capsys, "predict", "--adapter", v1_adapter, "--question", "Who?", "--context", huge)
    line = one_line_error(err)
    assert code == 2
    assert "--context" in line and "max_context_chars=100,000" in line and "data.max_context_chars=N" in line


def test_the_limit_is_the_data_setting_and_applies_to_input_files(v1_adapter, tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "a", "question": "Who founded Avalon?", "context": CONTEXT}) + "\n")
    code, _, err = run_cli(
        capsys, "predict", "data.max_context_chars=50", "--adapter", v1_adapter, "--input", str(questions)
    )
    line = one_line_error(err)
    assert code == 2 and "q.jsonl: record a: context has 85 characters, more than max_context_chars=50" in line
    code, out, _ = run_cli(
        capsys, "predict", "data.max_context_chars=100", "--adapter", v1_adapter, "--input", str(questions)
    )
    assert code == 0 and "confidence" in out


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"question": "Who?", "context": "   "}', "record line 1: context is empty"),
        ('{"question": 3, "context": "Ada did."}', "record line 1: 'question' must be a string, not a number"),
        (
            '{"id": "x", "question": "Who?", "context": "Ada."}\n{"id": "x", "question": "Who?", "context": "Ada."}',
            "record x: duplicate id at line 2",
        ),
        ("[1, 2]", "record line 1: line must be an object, not a list"),
        (
            '{"id": "s", "question": "Who\\ud800?", "context": "Ada."}',
            "record s: 'question' holds a lone surrogate U+D800",
        ),
    ],
)
def test_input_records_are_checked_as_data_files_are(v1_adapter, tmp_path, capsys, line, expected):
    questions = tmp_path / "q.jsonl"
    questions.write_text(line + "\n")
    code, _, err = run_cli(capsys, "predict", "--adapter", v1_adapter, "--input", str(questions))
    assert code == 2 and expected in one_line_error(err)


def test_an_undecodable_argument_is_a_one_line_error(v1_adapter, capsys):
    # Python decodes an argument's invalid UTF-8 byte (here 0xff) to the lone surrogate U+DCFF.
    code, _, err = run_cli(capsys, "predict", "--adapter", v1_adapter, "--question", "Who\udcff?", "--context", CONTEXT)
    line = one_line_error(err)
    assert code == 2 and "--question" in line and "lone surrogate U+DCFF" in line


# --- one Answer: predict, the Python API and the server answer alike ---


def test_predict_the_python_api_and_the_server_give_the_same_answers(v1_adapter, tmp_path, capsys):
    """predict's JSON lines are the Python API's `Answer`s, and the server answers each with the same
    text, confidence, offsets and flags: one typed answer made by one function."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    import loraqa
    from loraqa.config.loader import load_config
    from loraqa.inference.answer import Answer
    from loraqa.serving.app import create_app
    from loraqa.serving.registry import AdapterSource, build_registry

    asked = ["Who founded Avalon?", "When was Avalon founded?", "What does it lie near?"]
    questions = write_jsonl(
        tmp_path / "q.jsonl", [{"id": f"q{i}", "question": q, "context": CONTEXT} for i, q in enumerate(asked)]
    )
    code, out, _ = run_cli(capsys, "predict", "--device", "cpu", "--adapter", v1_adapter, "--input", str(questions))
    answers = loraqa.load(v1_adapter, device="cpu").answer_batch([(q, CONTEXT) for q in asked])
    assert loraqa.Answer is Answer and all(type(a) is Answer for a in answers)
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [a.prediction_row() for a in answers]
    registry = build_registry([AdapterSource("squad", v1_adapter)], load_config(None, ["training.device=cpu"]))
    with TestClient(create_app(registry)) as client:
        served = client.post("/v1/answer", json=[{"question": q, "context": CONTEXT} for q in asked]).json()
    fields = ("text", "confidence", "start", "end", "no_answer", "abstained")
    assert [tuple(s[f if f != "text" else "answer"] for f in fields) for s in served] == [
        tuple(getattr(a, f) for f in fields) for a in answers
    ]


# --- SQuAD v2: an adapter trained with unanswerable questions may answer "no answer" ---


def test_v2_adapter_answers_no_answer_by_the_threshold(v2_adapter, tmp_path, capsys):
    question = ("--question", "Who founded Avalon?", "--context", CONTEXT)
    code, out, _ = run_cli(
        capsys, "predict", "evaluation.null_score_diff_threshold=-1e9", "--adapter", v2_adapter, *question
    )
    assert code == 0 and out.startswith("(no answer)\t")
    code, out, _ = run_cli(
        capsys, "predict", "evaluation.null_score_diff_threshold=1e9", "--adapter", v2_adapter, *question
    )
    assert code == 0 and not out.startswith("(no answer)") and out.split("\t")[0].strip()

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"id": qid, "question": "Who founded Avalon?", "context": CONTEXT}) + "\n" for qid in ("a", "b")
        )
    )
    for threshold, no_answer in (("-1e9", True), ("1e9", False)):
        code, out, _ = run_cli(
            capsys,
            "predict",
            f"evaluation.null_score_diff_threshold={threshold}",
            "--adapter",
            v2_adapter,
            "--input",
            str(questions),
        )
        rows = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and len(rows) == 2
        assert all(row["no_answer"] is no_answer and (row["answer"] == "") is no_answer for row in rows)


def test_v1_adapter_always_answers(v1_adapter, capsys):
    code, out, _ = run_cli(
        capsys,
        "predict",
        "evaluation.null_score_diff_threshold=-1e9",
        "--adapter",
        v1_adapter,
        "--question",
        "Who founded Avalon?",
        "--context",
        CONTEXT,
    )
    assert code == 0 and not out.startswith("(no answer)")


# --- model.* overrides with --adapter: lengths apply, the rest is refused ---


def _confidences(capsys, adapter, questions, *overrides) -> list[float]:
    code, out, err = run_cli(capsys, "predict", *overrides, "--adapter", adapter, "--input", str(questions))
    assert code == 0, err
    return [json.loads(line)["confidence"] for line in out.splitlines()]


def test_inference_lengths_override_the_adapters(v1_adapter, tmp_path, capsys):
    long_context = " ".join(f"The town of Place{i} was founded in {1800 + i} by Person{i}." for i in range(12))
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"id": str(i), "question": f"Who founded Place{i}?", "context": long_context}) + "\n"
            for i in (1, 6, 11)
        )
    )
    trained = _confidences(capsys, v1_adapter, questions)  # the adapter's own max_seq_length=64
    assert _confidences(capsys, v1_adapter, questions, "model.max_seq_length=64") == trained
    assert _confidences(capsys, v1_adapter, questions, "model.max_seq_length=128") != trained
    assert _confidences(capsys, v1_adapter, questions, "model.max_seq_length=32") != trained


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.formulation=seq2seq", "config key 'model.formulation': the adapter was trained with 'auto'"),
        ("model.use_token_type_ids=true", "config key 'model.use_token_type_ids'"),
        ("model.add_tokens=[X1]", "config key 'model.add_tokens'"),
        ("model.name=other-base", "config key 'model.name'"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_settings_fixed_by_training_are_refused(v1_adapter, qa_files, tmp_path, capsys, command, override, expected):
    if command == "predict":
        argv = ["predict", override, "--adapter", v1_adapter, "--question", "Who?", "--context", CONTEXT]
    else:
        argv = [
            "eval",
            f"data.test={qa_files['test']}",
            override,
            "--adapter",
            v1_adapter,
            "--output",
            str(tmp_path / "e"),
        ]
    code, _, err = run_cli(capsys, *argv)
    line = one_line_error(err)
    assert code == 2 and expected in line
    if override.startswith("model.name"):
        assert "--model" in line
    assert not (tmp_path / "e").exists()


def test_eval_applies_max_seq_length(v1_adapter, qa_files, tmp_path, capsys):
    def confidences(out_dir, *overrides):
        code, _, err = run_cli(
            capsys,
            "eval",
            f"data.test={qa_files['test']}",
            "training.device=cpu",
            *overrides,
            "--adapter",
            v1_adapter,
            "--output",
            str(out_dir),
        )
        assert code == 0, err
        return [json.loads(line)["confidence"] for line in (out_dir / "predictions.jsonl").read_text().splitlines()]

    assert confidences(tmp_path / "a") != confidences(tmp_path / "b", "model.max_seq_length=32", "model.doc_stride=8")


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_a_window_past_the_base_positions_is_refused_with_an_adapter(command, v1_adapter, tmp_path, capsys):
    extra = ["--question", "Who?", "--context", CONTEXT] if command == "predict" else ["--output", str(tmp_path / "e")]
    code, _, err = run_cli(capsys, command, "--adapter", v1_adapter, "model.max_seq_length=4096", *extra)
    line = one_line_error(err)  # the tiny BERT has 256 positions
    assert code == 2 and "model.max_seq_length" in line and "max_position_embeddings = 256" in line
    assert not (tmp_path / "e").exists()


# --- calibrated confidence and abstention ---


@pytest.fixture(scope="module")
def calibrated_adapter(tiny_model_dir, qa_files, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("calibrated") / "run"
    args = tiny_overrides(tiny_model_dir("bert"), qa_files, out)  # shipped defaults: baseline on
    assert main(["train", *args, "--validation"]) == 0  # a validation split: the calibration is fitted on it
    return str(out / "adapter")


def test_an_adapter_carries_its_calibration_and_predict_withholds_answers_below_min_confidence(
    calibrated_adapter, tmp_path, capsys
):
    from pathlib import Path

    import loraqa
    from loraqa.metrics.calibration import Calibrator

    saved = json.loads((Path(calibrated_adapter) / "calibration.json").read_text())
    assert saved["fitted_on"].startswith("validation") and saved["method"] in ("temperature", "identity", "isotonic")
    questions = tmp_path / "q.jsonl"
    write_jsonl(
        questions,
        [
            {"id": str(i), "question": q, "context": CONTEXT}
            for i, q in enumerate(["Who founded Avalon?", "When was it founded?", "What is near?"])
        ],
    )
    code, out, err = run_cli(capsys, "predict", "--adapter", calibrated_adapter, "--input", str(questions))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and not any(r["abstained"] for r in rows)
    calibrator = Calibrator.from_dict(saved)
    for row in rows:  # the confidence shown is the calibrated one
        assert row["confidence"] == pytest.approx(float(calibrator.apply([row["raw_confidence"]])[0]), abs=1e-4)
    for cut, expected in ((0.0, [False] * 3), (1.0, [r["confidence"] < 1.0 for r in rows])):
        code, out, _ = run_cli(
            capsys, "predict", "--adapter", calibrated_adapter, "--input", str(questions), "--min-confidence", str(cut)
        )
        withheld = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and [r["abstained"] for r in withheld] == expected
        assert all(r["answer"] == "" for r in withheld if r["abstained"])
    assert any(r["confidence"] < 1.0 for r in rows)  # so the 1.0 cut withheld something
    qa = loraqa.load(calibrated_adapter)
    assert qa.answer("Who founded Avalon?", CONTEXT, min_confidence=1.0).abstained
    assert not qa.answer("Who founded Avalon?", CONTEXT).abstained
    code, _, err = run_cli(
        capsys,
        "predict",
        "--adapter",
        calibrated_adapter,
        "--question",
        "Who?",
        "--context",
        CONTEXT,
        "--min-confidence",
        "2",
    )
    assert code == 2 and one_line_error(err).startswith("loraqa: error: --min-confidence: 2.0")


def test_a_malformed_calibration_is_a_one_line_error(calibrated_adapter, tmp_path, capsys):
    import shutil

    copy = tmp_path / "adapter"
    shutil.copytree(calibrated_adapter, copy)
    (copy / "calibration.json").write_text('{"method": "temperature", "temperature": -1}')
    code, _, err = run_cli(capsys, "predict", "--adapter", str(copy), "--question", "Who?", "--context", CONTEXT)
    line = one_line_error(err)
    assert code == 2 and "calibration.json" in line and "temperature above 0" in line
