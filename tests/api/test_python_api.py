"""The Python API as a user calls it: train a tiny adapter, load it, answer one and many questions."""

from __future__ import annotations

import subprocess
import sys

import pytest
from run_helpers import tiny_overrides

import loraqa
from loraqa.errors import LoraqaError
from loraqa.runs.summary import read_summary


@pytest.fixture(scope="module")
def trained(tiny_model_dir, qa_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    settings = dict(item.split("=", 1) for item in tiny_overrides(tiny_model_dir("bert"), qa_files, out))
    settings["training.max_steps"] = 12
    settings["model.max_seq_length"] = 256
    result = loraqa.train(overrides=settings, evaluation__baseline=False)
    return result


def test_train_returns_the_run(trained):
    assert (trained.adapter / "adapter_config.json").is_file()
    assert set(trained.metrics) >= {"exact_match", "f1"}
    assert trained.summary == read_summary(trained.run_dir)  # typed, and what summary.json holds
    assert trained.summary.adapter == trained.metrics and trained.summary.baseline is None


def test_load_answer_and_batch_match_predict(trained, qa_files):

    qa = loraqa.load(trained.adapter, device="cpu")
    context = "The town of Avalon was founded in 1800 by Ada. It lies near a river and has a market."
    one = qa.answer(question="Who founded Avalon?", context=context)
    assert isinstance(one, loraqa.Answer) and 0.0 <= one.confidence <= 1.0
    if one.text:
        assert context[one.start : one.end] == one.text
    batch = qa.answer_batch(
        [("Who founded Avalon?", context), {"question": "When was Avalon founded?", "context": context}]
    )
    assert batch[0] == one and len(batch) == 2
    # the run directory loads too, and answers as the adapter does
    assert loraqa.load(trained.run_dir, device="cpu").answer("Who founded Avalon?", context) == one


def test_bad_path_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoraqaError) as info:
        loraqa.load(tmp_path / "empty")
    assert "\n" not in str(info.value) and "adapter" in str(info.value)
    with pytest.raises(LoraqaError):
        loraqa.load(trained_adapter_placeholder := tmp_path / "missing" / "adapter")  # noqa: F841
    with pytest.raises(LoraqaError, match="record 0"):
        loraqa.QA(None, None).answer_batch([42])


def test_one_liner_from_a_shell(trained):
    code = (
        f"import loraqa; print(loraqa.load({str(trained.adapter)!r}, device='cpu')"
        ".answer(question='Who founded Avalon?', context='Avalon was founded by Ada.'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("Answer(text=")


def test_import_is_light():
    out = subprocess.run(
        [sys.executable, "-c", "import loraqa, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "False"


def test_errors_name_the_api_parameters_not_cli_flags(tmp_path):
    from loraqa.config.loader import load_config

    qa = loraqa.QA(None, load_config(None, []))  # inputs are checked before the model is used
    with pytest.raises(LoraqaError) as info:
        qa.answer(question=" ", context="Ada wrote it.")
    assert str(info.value) == "question is empty"
    with pytest.raises(LoraqaError) as info:
        qa.answer_batch([("Who?", "Ada wrote it."), {"question": "Who?", "context": ""}])
    assert str(info.value) == "record 1: context is empty"
    with pytest.raises(LoraqaError) as info:
        qa.answer("Who?", "x" * 10**6)
    assert "load with overrides={'data.max_context_chars': N}" in str(info.value)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    with pytest.raises(LoraqaError) as info:
        loraqa.evaluate(output=taken)
    assert "--" not in str(info.value) and "use overwrite=True or output=DIR" in str(info.value)
